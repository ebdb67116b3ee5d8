#!/usr/bin/env bash
# Installs the pinned agent CLIs the tests in tests/agents/ drive (Claude Code, Codex CLI,
# Gemini CLI) into .cache/npm-clients (git-ignored). Idempotent: a pinned version already
# there is kept. Tests find the binaries in .cache/npm-clients/node_modules/.bin.
set -euo pipefail
cd "$(dirname "$0")/.."
CLAUDE_CODE=2.1.328
CODEX=0.169.0
GEMINI_CLI=0.61.0
prefix=.cache/npm-clients
mkdir -p "$prefix"
if ! command -v npm >/dev/null; then
  echo "agents.sh: npm not found; install nodejs and npm" >&2
  exit 1
fi
want="@anthropic-ai/claude-code@$CLAUDE_CODE @openai/codex@$CODEX @google/gemini-cli@$GEMINI_CLI"
if [ "$(cat "$prefix/.pinned" 2>/dev/null)" != "$want" ]; then
  # shellcheck disable=SC2086
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error $want
  echo "$want" > "$prefix/.pinned"
fi
