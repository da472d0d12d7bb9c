"""The unsafe engine's failover decisions and link frames, without sockets or clocks."""

import pytest

from hacluster.config import ConfigError, default_config, parse_config
from hacluster.unsafe import failover as fo
from hacluster.unsafe.links import FrameError, decode_body, decode_header, dials, encode_frame

T, S = 1.0, 0.5  # failover timeout and stagger, seconds
IDS = ("m1", "m2", "m3")


def primary(me, epoch, now=0.0):
    return fo.FailoverState(me=me, members=IDS, role=fo.PRIMARY, epoch=epoch, primary=me, heard_primary_at=now,
                            max_epoch_seen=epoch)


def backup(me, of, epoch, heard):
    return fo.FailoverState(me=me, members=IDS, role=fo.BACKUP, epoch=epoch, primary=of, heard_primary_at=heard,
                            max_epoch_seen=epoch)


def test_a_new_cluster_gets_its_first_primary_at_once_and_the_others_follow():
    s1, s2 = fo.initial("m1", IDS, 0.0), fo.initial("m2", IDS, 0.0)
    d1 = fo.on_tick(s1, 0.0, T, S)
    assert d1.promoted and d1.state.role == fo.PRIMARY and d1.state.epoch == 1
    assert not fo.on_tick(s2, 0.4, T, S).promoted  # m2 waits its turn in id order
    d2 = fo.on_heartbeat(s2, "m1", fo.PRIMARY, 1, 0.1)
    assert d2.state.primary == "m1" and d2.state.epoch == 1 and d2.resync


def test_a_backup_promotes_itself_after_the_timeout_without_asking_anyone():
    s = backup("m2", "m1", 1, heard=10.0)
    assert not fo.on_tick(s, 10.0 + T - 0.01, T, S).promoted
    d = fo.on_tick(s, 10.0 + T, T, S)
    assert d.promoted and d.state.role == fo.PRIMARY and d.state.epoch == 2 and d.state.primary == "m2"


def test_later_backups_wait_longer_so_one_side_promotes_one_master():
    m2, m3 = backup("m2", "m1", 1, heard=0.0), backup("m3", "m1", 1, heard=0.0)
    assert fo.promotion_delay_s(m2, T, S) == T
    assert fo.promotion_delay_s(m3, T, S) == T + S
    new = fo.on_tick(m2, T, T, S).state
    # m3 hears m2's heartbeat before its own timeout: it follows m2 in epoch 2 and copies it
    d = fo.on_heartbeat(m3, "m2", fo.PRIMARY, new.epoch, T + 0.1)
    assert d.state.primary == "m2" and d.state.epoch == 2 and d.resync
    assert not fo.on_tick(d.state, T + S, T, S).promoted


def test_promotion_goes_above_every_epoch_heard_of():
    s = backup("m2", "m1", 1, heard=0.0)
    s = fo.on_heartbeat(s, "m3", fo.BACKUP, 7, 0.0).state
    assert fo.on_tick(s, T, T, S).state.epoch == 8


def test_an_old_primary_that_meets_a_newer_one_steps_down_and_takes_its_copy():
    old = primary("m1", 1)
    d = fo.on_heartbeat(old, "m2", fo.PRIMARY, 2, 20.0)
    assert d.stepped_down and d.resync
    assert d.state.role == fo.BACKUP and d.state.primary == "m2" and d.state.epoch == 2
    # …while the newer primary ignores the old one
    new = primary("m2", 2)
    d2 = fo.on_heartbeat(new, "m1", fo.PRIMARY, 1, 20.0)
    assert d2.state.role == fo.PRIMARY and not d2.resync


def test_equal_epochs_are_settled_by_the_smaller_id():
    assert fo.outranks(2, "m1", 2, "m2") and not fo.outranks(2, "m2", 2, "m1")
    assert fo.outranks(3, "m3", 2, "m1")
    d = fo.on_heartbeat(primary("m2", 2), "m1", fo.PRIMARY, 2, 0.0)
    assert d.stepped_down and d.state.primary == "m1"


def test_a_backup_ignores_an_older_primary_still_talking_after_the_heal():
    s = backup("m3", "m2", 2, heard=5.0)
    d = fo.on_heartbeat(s, "m1", fo.PRIMARY, 1, 6.0)
    assert d.state.primary == "m2" and d.state.heard_primary_at == 5.0 and not d.resync
    assert fo.accepts_entry(s, "m2", 2)
    assert not fo.accepts_entry(s, "m1", 1) and not fo.accepts_entry(s, "m2", 1)


def test_two_masters_split_one_to_one_give_two_primaries():
    ids = ("m1", "m2")
    m1 = fo.FailoverState(me="m1", members=ids, role=fo.PRIMARY, epoch=1, primary="m1", max_epoch_seen=1)
    m2 = fo.FailoverState(me="m2", members=ids, role=fo.BACKUP, epoch=1, primary="m1", heard_primary_at=0.0,
                          max_epoch_seen=1)
    m2 = fo.on_tick(m2, T, T, S).state  # the cut: m2 hears nothing for T
    assert (m1.role, m2.role) == (fo.PRIMARY, fo.PRIMARY)
    healed = fo.on_heartbeat(m1, "m2", fo.PRIMARY, m2.epoch, 2 * T)
    assert healed.stepped_down and healed.state.primary == "m2"


def test_frames_round_trip_and_corruption_is_detected():
    frame = encode_frame({"t": "entry", "seq": 3, "payload": b"\x00\x01"})
    length, crc = decode_header(frame[:12])
    assert decode_body(frame[12:12 + length], crc) == {"t": "entry", "seq": 3, "payload": b"\x00\x01"}
    with pytest.raises(FrameError):
        decode_body(frame[12:11 + length] + b"x", crc)
    with pytest.raises(FrameError):
        decode_header(b"GET / HTTP/1")


def test_the_greater_address_dials_as_the_chaos_network_plans():
    assert dials("127.0.0.1:9002", "127.0.0.1:9001") and not dials("127.0.0.1:9001", "127.0.0.1:9002")


def test_the_unsafe_engine_is_refused_unless_the_config_says_it_loses_writes():
    base = default_config(3).model_dump(mode="json")
    with pytest.raises(ConfigError, match="loses_acknowledged_writes: true"):
        parse_config({**base, "store": {"engine": "unsafe-async-primary"}})
    cfg = parse_config({**base, "store": {"engine": "unsafe-async-primary",
                                          "unsafe_async_primary": {"loses_acknowledged_writes": True}}})
    assert cfg.store.unsafe and not default_config(3).store.unsafe
    assert default_config(3).store.engine == "pysyncobj"
