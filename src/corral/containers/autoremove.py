"""`run -d --rm`: a small detached process that waits for the container's task to exit and
then removes the container (docker's daemon does this; here the CLI leaves this watcher).

    python -m corral.containers.autoremove ADDRESS NAMESPACE DATA_ROOT ID
"""

import sys
import time


def spawn(address, namespace, data_root, cid):
    import os
    import subprocess
    subprocess.Popen([sys.executable, "-m", "corral.containers.autoremove", address, namespace, data_root, cid],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, cwd="/", env=dict(os.environ))


def main(argv):
    from corral.client import Client, ClientError
    address, namespace, data_root, cid = argv
    c = Client(address, namespace=namespace)
    c.data_root = data_root
    while True:
        try:
            c.wait_task(cid)
            c.containers.get(cid).remove(force=True)
            return 0
        except ClientError as e:
            if e.code == "NOT_FOUND":
                # no task (removed or never started): remove what is left, if anything
                try:
                    c.containers.get(cid).remove(force=True)
                except Exception:
                    pass
                return 0
            time.sleep(1)  # the daemon restarting: wait for it
        except Exception:
            return 0  # the container is gone already


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
