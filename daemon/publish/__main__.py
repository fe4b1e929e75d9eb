"""``python -m daemon.publish hash-code``: hash a remote-unlock code for ``mqtt.remote_unlock_code_hash``."""

import getpass
import sys

from daemon.publish.remote import hash_code


def main(argv: list[str]) -> int:
    """Read the code twice without echo and print its hash; exit 2 on misuse."""
    if argv != ["hash-code"]:
        print("usage: python -m daemon.publish hash-code", file=sys.stderr)
        return 2
    code = getpass.getpass("remote unlock code: ")
    if len(code) < 4 or code != getpass.getpass("again: "):
        print("codes differ or are shorter than 4 characters", file=sys.stderr)
        return 1
    print(hash_code(code))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
