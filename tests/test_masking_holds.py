"""Masking that holds against an agent that tries to show a secret anyway: pauses between
pieces, line breaks (pty, wrapped base64 and hex, TUI wraps) and colour codes inside it.

Unit tests drive the masker as the supervisor does (feed, idle release, end); the
end-to-end tests run real children (``sh``, ``base64``, ``xxd``, ``grep``) under
``agentsess run`` in pipe and pty mode and read both the terminal and the output log.
"""

import base64
import binascii
import json
import os
import shutil
import subprocess
import sys

import pexpect
import pytest
from helpers import agentsess, show, write_config

from agentsess.core.guard.masking import HOLD_CAP, Masker, normalize

PY = sys.executable
TOKEN = b"ghp_Zq8vN3xLw0Tk5Ry7Pa2Md9Hs4Jf6Gc1Bn8Ke"
PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    + b"\n".join(base64.b64encode(bytes(range(i, i + 48))) for i in range(0, 48 * 5, 48))
    + b"\n-----END PRIVATE KEY-----\n"
)


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail(f"{program} is required in CI")
        pytest.skip(f"{program} is not installed")
    return path


# ---------------------------------------------------------------- pauses (the idle release)


def test_a_held_prefix_of_four_bytes_or_more_survives_the_idle_release():
    m = Masker({"gh": TOKEN})
    assert m.feed(b"token: " + TOKEN[:10]) == b"token: "
    assert not m.releasable
    assert m.release() == b""  # the pause: nothing of the token comes out
    assert m.feed(TOKEN[10:] + b"\n") == b"[masked:gh]\n"


def test_a_pause_after_exactly_four_bytes_still_holds():
    m = Masker({"gh": TOKEN})
    assert m.feed(TOKEN[:4]) == b""
    assert m.release() == b""
    assert m.feed(TOKEN[4:]) == b"[masked:gh]"


def test_a_prompt_that_cannot_start_a_secret_appears_at_once():
    m = Masker({"gh": TOKEN, "db": b"hunter2-hunter2"})
    assert m.feed(b"Password: ") == b"Password: "
    assert m.pending == 0 and not m.releasable


def test_a_short_tail_is_let_out_at_a_pause_but_the_rest_of_the_secret_is_masked():
    m = Masker({"gh": TOKEN})
    assert m.feed(b"$ gh") == b"$ "
    assert m.releasable
    assert m.release() == b"gh"  # 2 bytes: a prompt ending in "gh" must not stall
    # the child goes on with the rest of the token after the pause
    assert m.feed(TOKEN[2:20]) == b""
    assert m.release() == b""
    assert m.feed(TOKEN[20:] + b" ok") == b"[masked:gh] ok"


def test_a_secret_written_a_byte_at_a_time_with_pauses_shows_at_most_three_bytes():
    m = Masker({"gh": TOKEN})
    out = []
    for i in range(len(TOKEN)):
        out.append(m.feed(TOKEN[i : i + 1]))
        out.append(m.release())
    out.append(m.feed(b"\n"))
    out.append(m.flush())
    shown = b"".join(out)
    assert shown == TOKEN[:3] + b"[masked:gh]\n"


def test_a_prefix_ruled_out_by_later_bytes_is_let_out_unchanged():
    m = Masker({"gh": TOKEN})
    assert m.feed(b"see ghp_Zq8") == b"see "
    assert m.release() == b""
    assert m.feed(b"!nope") == b"ghp_Zq8!nope"
    assert m.pending == 0


def test_the_end_of_the_stream_lets_a_held_prefix_out():
    m = Masker({"gh": TOKEN})
    assert m.feed(b"x ghp_Zq8") == b"x "
    assert m.flush() == b"ghp_Zq8"


def test_a_held_prefix_followed_by_endless_noise_does_not_stall_forever():
    m = Masker({"gh": TOKEN})
    out = [m.feed(b"ghp_Zq8")]
    total = 0
    while total <= HOLD_CAP:
        out.append(m.feed(b"\n" * 4096))
        total += 4096
    assert m.pending < 4096 + 8
    assert b"".join(out).startswith(b"ghp_Zq8\n")


# ---------------------------------------------------------------- line breaks and escapes


def test_a_multi_line_secret_is_masked_through_a_pty_line_discipline():
    m = Masker({"key": PEM})
    shown = PEM.replace(b"\n", b"\r\n")
    out = m.mask(b"cat key.pem\r\n" + shown + b"$ ")
    assert b"PRIVATE KEY" not in out and b"[masked:key]" in out
    # the line breaks inside stay, so a terminal's layout does not shift
    assert out == b"cat key.pem\r\n[masked:key]" + b"\r\n" * PEM.count(b"\n") + b"$ "


def test_a_json_service_account_key_is_masked_in_a_pty():
    value = json.dumps({"type": "service_account", "private_key": PEM.decode(), "client_email": "a@b.c"}, indent=2).encode()
    m = Masker({"sa": value})
    out = b"".join([m.feed(value.replace(b"\n", b"\r\n")[:100]), m.feed(value.replace(b"\n", b"\r\n")[100:]), m.flush()])
    assert b"service_account" not in out and out.startswith(b"[masked:sa]")


@pytest.mark.parametrize("width", [76, 64, 60, 13])
def test_base64_and_hex_wrapped_at_any_width_are_masked(width):
    m = Masker({"gh": TOKEN})
    for enc in (base64.b64encode(b"user:" + TOKEN), TOKEN.hex().encode(), TOKEN.hex().upper().encode()):
        for br in (b"\n", b"\r\n"):
            wrapped = br.join(enc[i : i + width] for i in range(0, len(enc), width))
            out = m.mask(wrapped + br)
            assert b"[masked:gh]" in out, (enc, width, br)
            assert normalize(out).find(normalize(enc)[8:30]) < 0


def test_sgr_colour_codes_inside_a_token_do_not_hide_it():
    m = Masker({"gh": TOKEN})
    coloured = b"\x1b[01;31m\x1b[K" + TOKEN[:4] + b"\x1b[m\x1b[K" + TOKEN[4:] + b"\n"
    out = m.mask(b"config:" + coloured)
    assert out == b"config:\x1b[01;31m\x1b[K[masked:gh]\x1b[m\x1b[K\n"
    # a colour in the middle of the token, and a 256-colour one
    mid = TOKEN[:17] + b"\x1b[38;5;196m" + TOKEN[17:] + b"\x1b[0m"
    assert m.mask(mid) == b"[masked:gh]\x1b[38;5;196m\x1b[0m"


def test_a_token_wrapped_by_a_tui_is_masked():
    m = Masker({"gh": TOKEN})
    for wrap in (b"\r\n", b"\x1b[K\r\n", b"\x1b[12;1H", b"\x1b(B\x1b[m\r\n\x1b[2C"):
        shown = b"\x1b[2J" + TOKEN[:25] + wrap + TOKEN[25:] + b"\x1b[0m"
        out = b"".join([m.feed(shown[:20]), m.feed(shown[20:31]), m.release(), m.feed(shown[31:]), m.flush()])
        assert b"[masked:gh]" in out and TOKEN[4:25] not in out, wrap


def test_an_escape_sequence_cut_off_at_the_end_of_a_read_inside_a_token():
    m = Masker({"gh": TOKEN})
    out = m.feed(TOKEN[:10] + b"\x1b[3") + m.release() + m.feed(b"1m" + TOKEN[10:]) + m.flush()
    assert out == b"[masked:gh]\x1b[31m"


def test_escape_sequences_that_are_not_noise_still_hide_nothing():
    # an OSC 52 clipboard write carries base64 of the secret: masked as an encoding
    m = Masker({"gh": TOKEN})
    osc = b"\x1b]52;c;" + base64.b64encode(TOKEN) + b"\x07"
    assert TOKEN not in m.mask(osc) and b"[masked:gh]" in m.mask(osc)


# ---------------------------------------------------------------- end to end


def _setup_secret(name: str, value: bytes, var: str = "API"):
    agentsess("secret", "set", name, input=value, check=0)
    write_config(f'[profiles.p.env]\n{var} = {{ secret = "{name}" }}\n')


def _log() -> bytes:
    path = os.path.join(os.environ["AGENTSESS_HOME"], "runs", show()["id"], "output.log")
    with open(path, "rb") as fh:
        return fh.read()


SPLIT = (
    "import os,sys,time; v=os.environ['API']; sys.stdout.write('A:'+v[:12]); sys.stdout.flush(); "
    "time.sleep(0.2); sys.stdout.write(v[12:]+'\\n'); sys.stdout.flush()"
)


def test_split_secret_with_a_pause_stays_masked_in_pipe_mode():
    _setup_secret("api", TOKEN)
    proc = agentsess("run", "--no-pty", "--profile", "p", "--", PY, "-c", SPLIT, check=0)
    assert proc.stdout == b"A:[masked:api]\n"
    assert TOKEN[:4] not in _log()


def test_split_secret_with_a_pause_stays_masked_in_pty_mode():
    _setup_secret("api", TOKEN)
    child = pexpect.spawn(PY, ["-m", "agentsess", "run", "--profile", "p", "--", PY, "-c", SPLIT], env=dict(os.environ), timeout=20)
    child.expect(pexpect.EOF)
    seen = child.before
    child.close()
    assert child.exitstatus == 0
    assert TOKEN[:4] not in seen and b"A:[masked:api]" in seen
    assert TOKEN[:4] not in _log()


def test_a_prompt_appears_before_the_child_reads_input():
    _setup_secret("api", TOKEN)
    script = "import sys; sys.stdout.write('Continue? [y/N] '); sys.stdout.flush(); a=sys.stdin.readline(); print('got', a.strip())"
    p = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "--profile", "p", "--", PY, "-c", script],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    os.set_blocking(p.stdout.fileno(), True)
    assert p.stdout.read(len(b"Continue? [y/N] ")) == b"Continue? [y/N] "  # before any answer
    out, _ = p.communicate(b"y\n", timeout=30)
    assert out == b"got y\n"


def test_pem_key_catted_through_a_pty_is_masked(tmp_path):
    _setup_secret("key", PEM, "KEY")
    write_config('[profiles.p.env]\nKEY = { secret = "key" }\n')
    f = tmp_path / "k.pem"
    f.write_bytes(PEM)
    child = pexpect.spawn(PY, ["-m", "agentsess", "run", "--profile", "p", "--", "cat", str(f)], env=dict(os.environ), timeout=20)
    child.expect(pexpect.EOF)
    seen = child.before
    child.close()
    assert b"PRIVATE KEY" not in seen and b"[masked:key]" in seen
    assert b"PRIVATE KEY" not in _log()


def test_real_base64_xxd_and_grep_output_is_masked(tmp_path):
    for program in ("base64", "xxd", "grep"):
        need(program)
    long_secret = TOKEN + b"-" + TOKEN[4:]  # 77 bytes: its base64 wraps at 76
    _setup_secret("api", long_secret)
    script = (
        'printf %s "$API" | base64; printf %s "$API" | xxd -p; '
        'printf "%s\\n" "$API" | grep --color=always ghp_; printf "%s\\n" "$API" | base64 -w 20'
    )
    proc = agentsess("run", "--no-pty", "--profile", "p", "--", "sh", "-c", script, check=0)
    assert proc.returncode == 0
    out = proc.stdout
    assert out.count(b"[masked:api]") == 4, out
    plain = normalize(out)
    for enc in (long_secret, base64.b64encode(long_secret), binascii.hexlify(long_secret)):
        assert normalize(enc)[6:40] not in plain
    assert b"\x1b[" in out  # grep's colours are still there around the marker
    assert long_secret[4:] not in normalize(_log())
