"""Container ids (64 lowercase hex, random), docker-style generated names, and the one
resolver every command uses: a name, a full id, or a unique id prefix."""

import os
import re

from corral.containers import labels as L

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

_ADJECTIVES = ("agile", "bold", "brave", "calm", "clever", "eager", "fond", "gentle", "happy",
               "jolly", "keen", "lucid", "merry", "nimble", "patient", "quiet", "quirky",
               "sharp", "steady", "sunny", "tender", "vivid", "wise", "zealous")
_NOUNS = ("badger", "bison", "colt", "coyote", "drover", "falcon", "heron", "lariat", "mare",
          "mesa", "mustang", "otter", "prairie", "rancher", "saddle", "sage", "stallion",
          "steer", "trail", "wrangler", "yak", "yearling")


class ResolveError(Exception):
    pass


def new_id():
    return os.urandom(32).hex()


def _choice(words):
    """A random word (from os.urandom: the random module costs `corral run` its import)."""
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def generate_name(taken):
    for _ in range(100):
        name = f"{_choice(_ADJECTIVES)}_{_choice(_NOUNS)}"
        if name not in taken:
            return name
    while True:
        name = f"{_choice(_ADJECTIVES)}_{_choice(_NOUNS)}{int.from_bytes(os.urandom(2), 'big') % 9999 + 1}"
        if name not in taken:
            return name


def check_name(name):
    if not _NAME.match(name) or len(name) > 128:
        raise ResolveError(f"invalid container name {name!r}: use letters, digits, '_', '.' and '-' "
                           "(starting with a letter or digit)")


def resolve(records, ref):
    """The one record that `ref` names among `records` (container messages): an exact name,
    an exact id, or a unique id prefix, in that order."""
    if not ref:
        raise ResolveError("empty container name or id")
    for r in records:
        if r.labels.get(L.NAME) == ref:
            return r
    for r in records:
        if r.id == ref:
            return r
    matches = [r for r in records if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ResolveError(f"container id prefix {ref!r} is ambiguous ({len(matches)} containers); give more of it")
    raise ResolveError(f"no such container: {ref}")
