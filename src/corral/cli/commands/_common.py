"""Helpers the container commands share: resolve each named container and run an action on
it, reporting failures per container as docker does (exit 1 if any failed)."""

import sys

from corral.cli.errors import CLIError


def get(env, ref):
    from corral.containers.api import ContainerError
    try:
        return env.client().containers.get(ref)
    except ContainerError as e:
        raise CLIError(str(e), 1) from None


def each(env, refs, action, echo=True):
    """action(container) for each ref; prints the ref on success; exit 1 if any failed."""
    from corral.client import ClientError
    from corral.containers.api import ContainerError
    failed = False
    for ref in refs:
        try:
            c = get(env, ref)
            action(c)
            if echo:
                print(ref)
        except (CLIError, ContainerError, ClientError) as e:
            if getattr(e, "code", None) == "UNAVAILABLE":
                raise  # corrald does not answer: one line for the whole command (main)
            print(f"corral: {ref}: {getattr(e, 'message', None) or e}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
