"""GitHub's CLI as the template-update workflow uses it, against pull requests kept in a
JSON file ($FAKE_GITHUB): `pr list` (--head, --state, --json, --jq), `pr create` and
`pr close`. No GitHub answers on this machine; the workflow's own shell runs against this.

While the file $FAKE_GITHUB.refuse exists, `pr create` fails as GitHub does when the
repository does not let Actions create pull requests, and removes it: the next succeeds.
"""

import json
import os
import sys
from pathlib import Path

import jq

STATE = Path(os.environ["FAKE_GITHUB"])
REFUSE = STATE.with_name(STATE.name + ".refuse")
REFUSED = (
    "pull request create failed: GraphQL: GitHub Actions is not permitted to create or "
    "approve pull requests (createPullRequest)"
)


def option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


def main(args: list[str]) -> int:
    pulls = json.loads(STATE.read_text()) if STATE.exists() else []
    if args[:2] == ["pr", "list"]:
        head, state = option(args, "--head"), option(args, "--state", "open").upper()
        found = [
            pull
            for pull in pulls
            if head in (None, pull["headRefName"]) and state in ("ALL", pull["state"])
        ]
        for result in jq.compile(option(args, "--jq", ".")).input_value(found).all():
            print(result if isinstance(result, str) else json.dumps(result))
    elif args[:2] == ["pr", "create"]:
        if REFUSE.exists():
            REFUSE.unlink()
            print(REFUSED, file=sys.stderr)
            return 1
        number = len(pulls) + 1
        url = f"https://github.example/team/service/pull/{number}"
        pulls.append({
            "number": number, "url": url, "state": "OPEN", "headRefName": option(args, "--head"),
            "title": option(args, "--title"), "draft": "--draft" in args,
        })  # fmt: skip
        print(url)
    elif args[:2] == ["pr", "close"]:
        (pull,) = [pull for pull in pulls if str(pull["number"]) == args[2]]
        pull["state"] = "CLOSED"
    else:
        print(f"fake gh: not implemented: {args}", file=sys.stderr)
        return 2
    STATE.write_text(json.dumps(pulls, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
