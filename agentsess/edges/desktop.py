"""Desktop notifications: ``notify-send``, where there is one and a desktop session to show it.

Best effort and never in the way: the program is started detached, its output dropped, and
waited for on a thread (no zombie), killed after a few seconds. The text is escaped for the
notification's markup (notify-send bodies may carry ``<b>``-style tags), so text an agent
chose shows as text.
"""

import os
import shutil

WAIT = 10.0


def _plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def notify(title: str, body: str) -> bool:
    """Show one notification; True when ``notify-send`` was started."""
    program = shutil.which("notify-send")
    if program is None:
        return False
    import subprocess
    import threading

    try:
        proc = subprocess.Popen(
            [program, "--app-name=agentsess", "--urgency=critical", "--", _plain(title), _plain(body)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, env=dict(os.environ),
        )
    except OSError:
        return False

    def reap() -> None:
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    threading.Thread(target=reap, name="agentsess-notify", daemon=True).start()
    return True
