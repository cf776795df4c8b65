"""Capability names and numbers, masks, and capget against /proc/self/status."""

import pytest

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import capabilities as caps


def test_every_kernel_capability_has_its_number():
    assert len(caps.NAMES) == 41
    assert caps.NUMBERS["CAP_CHOWN"] == 0
    assert caps.NUMBERS["CAP_SETPCAP"] == 8
    assert caps.NUMBERS["CAP_SYS_ADMIN"] == 21
    assert caps.NUMBERS["CAP_AUDIT_READ"] == 37
    assert caps.NUMBERS["CAP_BPF"] == 39
    assert caps.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.last_cap() <= 63


def test_masks_round_trip():
    names = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
    mask = caps.to_mask(names)
    assert mask == (1 << 5) | (1 << 10) | (1 << 29)
    assert sorted(caps.to_names(mask)) == sorted(names)
    assert caps.to_mask(caps.NAMES) == (1 << 41) - 1


def test_caps_above_the_kernel_limit_are_left_out():
    assert caps.to_mask(["CAP_BPF", "CAP_CHECKPOINT_RESTORE"], limit=38) == 0
    assert caps.to_mask(["CAP_KILL", "CAP_BPF"], limit=38) == 1 << 5


def test_unknown_name_is_one_clear_line():
    with pytest.raises(RuntimeFailure) as err:
        caps.to_mask(["CAP_KILL", "CAP_FLY"])
    assert "CAP_FLY" in str(err.value) and "\n" not in str(err.value)
    assert caps.unknown_names(["CAP_KILL", "cap_kill", "CAP_FLY"]) == ["cap_kill", "CAP_FLY"]


def test_masks_from_spec_has_all_five_sets():
    masks = caps.masks_from_spec({"bounding": ["CAP_KILL"], "ambient": ["CAP_CHOWN"]})
    assert set(masks) == set(caps.SETS)
    assert masks["bounding"] == 1 << 5 and masks["ambient"] == 1
    assert masks["effective"] == masks["permitted"] == masks["inheritable"] == 0


def test_capget_matches_proc_status():
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    eff, prm, inh = caps.capget()
    assert eff == int(status["CapEff"], 16)
    assert prm == int(status["CapPrm"], 16)
    assert inh == int(status["CapInh"], 16)
