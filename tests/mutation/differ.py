"""Look for an input on which a surviving masking mutant and the real code disagree.

    .venv/bin/python tests/mutation/differ.py NAME [NAME...] [--trials N] [--seed S]

Run after ``tests/mutation/run.py masking``: it imports the mutated module from
``.cache/mutation/masking/mutants`` (mutmut's trampolines choose the mutant by
``MUTANT_UNDER_TEST`` at every call), drives :class:`Masker` with random secrets and random
streams (noise bytes, escape sequences, pieces of the secrets and of their encodings, fed in
random chunks with idle releases in between) once as the real code and once as the mutant,
and prints the first input on which anything a caller sees differs: the bytes out of
``feed``/``release``/``flush``, ``mask``, ``mask_cut``, ``mask_text``, ``pending``,
``releasable``, ``names``. A difference is a test to write; none after many trials is
evidence (not proof) that the mutant is equivalent, to be argued from the code in
docs/mutation-testing.md. Not collected by pytest (no ``test_`` prefix); needs mutmut.
"""

import os
import random
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MUTANTS = os.path.join(ROOT, ".cache", "mutation", "masking", "mutants")

ALPHABET = [b"a", b"b", b"c", b"\r", b"\n", b"\x1b", b"[", b"m", b"3", b"(", b"B", b"=", b"%", b"/", b"+"]
NOISE = [b"\r\n", b"\n", b"\x1b[31m", b"\x1b[0m", b"\x1b[K", b"\x1b(B", b"\x1b[", b"\x1b"]


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout


def _overlapping(rng: random.Random) -> tuple[dict, bytes]:
    """Secrets cut from one random string, and data made of pieces of it: overlapping
    occurrences, keys that are prefixes of others, 16-byte keys of longer secrets."""
    base = bytes(rng.choice(b"abc" if rng.random() < 0.5 else b"ab") for _ in range(rng.randint(10, 40)))
    secrets = {}
    for n in range(rng.randint(2, 6)):
        i = rng.randrange(len(base))
        secrets[f"s{n}"] = base[i : i + rng.choice([1, 2, 3, 4, 7, 15, 16, 17, 20])]
    data = b"".join(base[i : i + rng.randint(1, 24)] for i in (rng.randrange(len(base)) for _ in range(rng.randint(1, 4))))
    return secrets, data


def _secrets(rng: random.Random) -> dict:
    out = {}
    for n in range(rng.randint(1, 4)):
        if rng.random() < 0.3:
            size = rng.randint(8, 20)
            value = bytes(rng.choice(b"abcdef0123/+= ") for _ in range(size))
        else:
            letters = ALPHABET if rng.random() < 0.4 else ALPHABET[:3]  # escape bytes in a secret, too
            value = b"".join(rng.choice(letters) for _ in range(rng.randint(1, 5)))
        out[f"s{n}"] = value if rng.random() < 0.8 else value.decode("latin-1")
    return out


def _stream(rng: random.Random, masking, secrets: dict) -> bytes:
    pieces = []
    values = [v.encode("latin-1") if isinstance(v, str) else v for v in secrets.values()]
    patterns = [p for v in values for p in masking.encodings(v)]
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.35 and patterns:
            p = rng.choice(patterns)
            if rng.random() < 0.3:  # noise inside it
                i = rng.randint(0, len(p))
                p = p[:i] + rng.choice(NOISE) + p[i:]
            if rng.random() < 0.2:  # only a prefix of it
                p = p[: rng.randint(1, len(p))]
            pieces.append(p)
        elif r < 0.55:
            pieces.append(rng.choice(NOISE))
        else:
            pieces.append(b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))))
    return b"".join(pieces)


def _observe(masking, secrets: dict, data: bytes, cuts: list, releases: set, group: int):
    masking._GROUP = group
    m = masking.Masker(secrets)
    seen = [m.names, m.max_pending, repr(m)]
    seen.append(m.mask(data))
    seen.append(m.mask_cut(data))
    text = data.decode("utf-8", "surrogateescape")
    seen.append(m.mask_text(text))
    seen.append(m.mask_text(text, cut=True))
    seen.append(masking.mask_text(text, secrets))
    seen.append(masking.normalize(data))
    last = 0
    for i, cut in enumerate(cuts + [len(data)]):
        seen.append(m.feed(data[last:cut]))
        seen.append((m.pending, m.releasable))
        if i in releases:
            seen.append(m.release())
            seen.append((m.pending, m.releasable))
        last = cut
    seen.append(m.flush())
    seen.append((m.pending, m.releasable))
    s = masking.Masker(secrets)
    seen.append(b"".join(s.feed(data[i : i + 1]) for i in range(len(data))) + s.flush())
    return seen


def differ(masking, name: str, trials: int, seed: int):
    rng = random.Random(seed)
    for trial in range(trials):
        if rng.random() < 0.4:
            secrets, data = _overlapping(rng)
        else:
            secrets = _secrets(rng)
            data = _stream(rng, masking, secrets)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 4))))
        releases = {i for i in range(len(cuts) + 1) if rng.random() < 0.5}
        group = rng.choice([64, 64, 1, 2, 3])
        os.environ["MUTANT_UNDER_TEST"] = ""
        want = _observe(masking, secrets, data, cuts, releases, group)
        os.environ["MUTANT_UNDER_TEST"] = name
        signal.alarm(2)
        try:
            got = _observe(masking, secrets, data, cuts, releases, group)
        except Timeout:
            got = "timeout"
        except Exception as exc:  # noqa: BLE001 - a mutant that raises is noticed
            got = f"{type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
            os.environ["MUTANT_UNDER_TEST"] = ""
        if got != want:
            return {"trial": trial, "secrets": secrets, "data": data, "cuts": cuts, "releases": sorted(releases),
                    "group": group, "want": want, "got": got}
    return None


def main(argv: list[str]) -> int:
    trials, seed, names = 3000, 1, []
    it = iter(argv)
    for arg in it:
        if arg == "--trials":
            trials = int(next(it))
        elif arg == "--seed":
            seed = int(next(it))
        else:
            names.append(arg)
    sys.path.insert(0, MUTANTS)
    os.environ["MUTANT_UNDER_TEST"] = ""
    from agentsess.core.guard import masking

    assert masking.__file__.startswith(MUTANTS), masking.__file__
    signal.signal(signal.SIGALRM, _alarm)
    for name in names:
        found = differ(masking, name, trials, seed)
        if found is None:
            print(f"{name}: no difference in {trials} trials")
            continue
        print(f"{name}: differs at trial {found['trial']}")
        for key in ("secrets", "data", "cuts", "releases", "group"):
            print(f"    {key}: {found[key]!r}")
        want, got = found["want"], found["got"]
        if isinstance(got, str):
            print(f"    mutant: {got}")
        else:
            for i, (w, g) in enumerate(zip(want, got, strict=False)):
                if w != g:
                    print(f"    observation {i}: real {w!r}, mutant {g!r}")
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
