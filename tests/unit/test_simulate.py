"""The simulators' generators: flood curves and report modes, plows' motion, tag sightings, wire formats."""

from __future__ import annotations

import base64
import itertools
import struct
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.codecs.cayenne import decode, from_chirpstack
from adapters.message import to_utc
from tests.simulate import flood, plows, tags
from tests.simulate.cli import build_parser, make_scenario
from tests.simulate.core import Outgoing, bearing_deg, distance_m, undecoded

START = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)
DAY_S = 86_400


def until(messages: Any, seconds: float) -> list[Outgoing]:
    end = START + timedelta(seconds=seconds)
    return list(itertools.takewhile(lambda m: m.at < end, messages))


def day_of_readings(gauge: flood.Gauge, seed: int) -> list[flood.Reading]:
    return list(itertools.takewhile(lambda r: r.t < DAY_S, flood.readings(gauge, seed)))


# --- flood ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), index=st.integers(0, 30))
def test_a_flood_wave_passes_observation_start_alert_and_danger_in_order_then_falls_back(
    seed: int, index: int
) -> None:
    gauge = flood.make_gauges(index + 1, seed)[index]
    assert gauge.base_level < gauge.start_level < gauge.alert_level < gauge.danger_level
    assert gauge.danger_level < gauge.peak_level < gauge.reference_level
    levels = [r.level for r in day_of_readings(gauge, seed)]

    def first(threshold: float, after: int = 0) -> int:
        return next(i for i in range(after, len(levels)) if levels[i] >= threshold)

    start, alert, danger = first(gauge.start_level), first(gauge.alert_level), first(gauge.danger_level)
    peak = levels.index(max(levels))
    below_alert_again = next(i for i in range(peak, len(levels)) if levels[i] < gauge.alert_level)
    assert 0 < start < alert < danger <= peak < below_alert_again
    assert max(levels) < gauge.reference_level  # the simulated river stays inside its banks


def test_a_gauge_reports_every_10_minutes_and_every_5_once_past_its_observation_start_level() -> None:
    for gauge in flood.make_gauges(4, seed=3):
        readings = day_of_readings(gauge, 3)
        modes = {r.flood_mode for r in readings}
        assert modes == {True, False}, "a day of flood must show both modes"
        for before, after in itertools.pairwise(readings):
            expected = flood.FLOOD_INTERVAL_S if before.flood_mode else flood.NORMAL_INTERVAL_S
            assert after.t - before.t == expected
        for r in readings:
            if r.level >= gauge.start_level:
                assert r.flood_mode
            if r.level < gauge.start_level - flood.HYSTERESIS_M:
                assert not r.flood_mode


def test_gauges_alternate_between_the_things_stack_and_sigfox() -> None:
    scenario = flood.scenario(4, 1, START, "app", "ttn", "key")
    assert [d.protocol for d in scenario.devices] == ["tts", "sigfox", "tts", "sigfox"]
    families = {m.family for m in until(scenario.messages, 3600)}
    assert families == {"tts", "sigfox"}


def test_tts_uplinks_carry_increasing_f_cnt_and_a_frm_payload_that_decodes_to_decoded_payload() -> None:
    scenario = flood.scenario(3, 5, START, "takamatsu-flood", "ttn", "key")
    counters: dict[str, list[int]] = defaultdict(list)
    uplinks = [m for m in until(scenario.messages, DAY_S) if m.family == "tts"]
    assert len(uplinks) > 200
    for message in uplinks:
        body = message.body
        device = body["end_device_ids"]["device_id"]
        assert message.topic == f"v3/takamatsu-flood@ttn/devices/{device}/up"
        up = body["uplink_message"]
        assert decode(base64.b64decode(up["frm_payload"])) == up["decoded_payload"]
        assert to_utc(body["received_at"]) == message.at
        counters[device].append(up["f_cnt"])
    for frames in counters.values():
        assert all(b == a + 1 for a, b in itertools.pairwise(frames))
    flood_mode = [m.body["uplink_message"]["decoded_payload"]["digital_in_3"] for m in uplinks]
    assert set(flood_mode) == {0, 1}


def test_sigfox_callbacks_carry_the_level_below_the_bank_top_in_the_declared_layout() -> None:
    scenario = flood.scenario(2, 9, START, "app", "ttn", "key")
    gauge = flood.make_gauges(2, 9)[1]
    callbacks = [m for m in until(scenario.messages, DAY_S) if m.family == "sigfox"]
    readings = day_of_readings(gauge, 9)
    assert len(callbacks) == len(readings)
    for message, reading in zip(callbacks, readings, strict=True):
        body = message.body
        assert message.topic is None
        assert body["device"] == gauge.sigfox_id
        assert body["time"] == int(message.at.timestamp())
        level_mm, battery_mv, flags = struct.unpack(">hHB", bytes.fromhex(body["data"]))
        assert abs(level_mm / 1000 - (reading.level - gauge.reference_level)) <= 0.0005
        assert level_mm < 0
        assert 3500 <= battery_mv <= 3700
        assert flags & 1 == int(reading.flood_mode)
    sequence = [m.body["seqNumber"] for m in callbacks]
    assert all(b == (a + 1) % 4096 for a, b in itertools.pairwise(sequence))
    # BIDIR: the first report and then one every 6 hours ask for a downlink (4 a day at most).
    asking = [(m.at - START).total_seconds() for m in callbacks if m.body["ack"]]
    assert callbacks[0].body["ack"]
    assert len(asking) == 4
    # (reception times: the network's latency varies by up to 1.3 s)
    assert all(b - a > flood.SIGFOX_DOWNLINK_EVERY_S - 2 for a, b in itertools.pairwise(asking))


def test_messages_of_all_devices_come_in_simulated_time_order() -> None:
    for name in ("flood", "plows", "tags"):
        args = build_parser().parse_args([name, "--count", "20", "--detectors", "50", "--tags", "300"])
        messages = list(itertools.islice(make_scenario(args, START).messages, 500))
        assert [m.at for m in messages] == sorted(m.at for m in messages)


# --- plows ----------------------------------------------------------------------------------


def test_plows_cover_the_distance_their_reported_speed_gives_in_the_direction_they_head() -> None:
    straight = turns = 0
    for index in range(30):
        reports = list(itertools.islice(plows.plow_reports(index, seed=2), 120))
        for before, after in itertools.pairwise(reports):
            travelled = distance_m(before.lon, before.lat, after.lon, after.lat)
            driven = after.speed_kmh / 3.6 * plows.REPORT_INTERVAL_S
            assert travelled <= driven + 0.5
            if after.turned:
                turns += 1
            elif after.speed_kmh > 0:
                straight += 1
                assert abs(travelled - driven) < 0.5
                bearing = bearing_deg(before.lon, before.lat, after.lon, after.lat)
                assert abs((bearing - after.heading + 180) % 360 - 180) < 1.0
    assert straight > 1000
    assert turns > 300


def test_plows_drive_slower_with_the_blade_down_and_stay_in_aizuwakamatsu() -> None:
    reports = [r for i in range(20) for r in itertools.islice(plows.plow_reports(i, seed=4), 200)]
    down = [r.speed_kmh for r in reports[1:] if r.blade and r.speed_kmh > 0]
    up = [r.speed_kmh for r in reports[1:] if not r.blade and r.speed_kmh > 0]
    assert max(down) <= 25
    assert min(up) >= 20
    assert sum(up) / len(up) > sum(down) / len(down)
    for r in reports:
        assert distance_m(r.lon, r.lat, 139.9298, 37.4947) < 4300


def test_270_plows_every_20_seconds_make_about_13_5_messages_a_second() -> None:
    scenario = plows.scenario(270, 1, START, "app-id", "key")
    messages = until(scenario.messages, 600)
    per_plow = Counter(m.topic for m in messages)
    assert len(per_plow) == 270
    assert set(per_plow.values()) <= {29, 30}  # 600 s / 20 s, the last one maybe just past the end
    assert abs(len(messages) / 600 - 13.5) < 0.1


def test_chirpstack_uplinks_carry_lpp_data_matching_their_object_and_increasing_fcnt() -> None:
    scenario = plows.scenario(10, 6, START, "7c1e0d4a", "key")
    counters: dict[str, list[int]] = defaultdict(list)
    messages = until(scenario.messages, 1800)
    for message in messages:
        body = message.body
        dev_eui = body["deviceInfo"]["devEui"]
        assert message.topic == f"application/7c1e0d4a/device/{dev_eui}/event/up"
        measures = decode(base64.b64decode(body["data"]))
        assert measures == from_chirpstack(body["object"])
        assert set(measures) == {"gps_1", "analog_in_2", "digital_in_3"}
        assert to_utc(body["time"]) == message.at
        counters[dev_eui].append(body["fCnt"])
    assert len(counters) == 10
    for frames in counters.values():
        assert all(b == a + 1 for a, b in itertools.pairwise(frames))


# --- tags -----------------------------------------------------------------------------------


def test_tags_are_sighted_only_within_range_of_the_detector_that_reports_them() -> None:
    detectors, count = 120, 400
    grid = tags.detector_grid(detectors)
    walkers = {w.tag: w for w in (tags.Walker(i, 8, grid) for i in range(count))}
    messages = until(tags.sightings(detectors, count, 8, START, "kakogawa"), 1800)
    seen = 0
    for message in messages:
        _, _, apikey, detector, attrs = message.topic.split("/")  # type: ignore[union-attr]
        assert (apikey, attrs) == ("kakogawa", "attrs")
        index = int(detector.removeprefix("det-cam-")) - 1
        assert 0 <= index < detectors
        node = grid.node_xy(index % grid.columns, index // grid.columns)
        for sighting in message.body:
            at = to_utc(sighting["ts"])
            assert at <= message.at
            x, y = walkers[sighting["tag"]].position((at - START).total_seconds())
            assert ((x - node[0]) ** 2 + (y - node[1]) ** 2) ** 0.5 <= tags.DETECTION_RADIUS_M
            assert -100 <= sighting["rssi"] <= -40
            seen += 1
    assert seen > 500


def test_volunteers_phones_report_tags_within_their_range_at_their_own_position() -> None:
    detectors, count, phones = 100, 1500, 40
    grid = tags.detector_grid(detectors)
    walkers = {w.tag: w for w in (tags.Walker(i, 9, grid) for i in range(count))}
    messages = until(tags.sightings(detectors, count, 9, START, "kakogawa", phones), 1800)
    from_phones = [m for m in messages if "/phone-" in (m.topic or "")]
    seen = 0
    for message in from_phones:
        (place,) = {(s["longitude"], s["latitude"]) for s in message.body}
        for sighting in message.body:
            x, y = walkers[sighting["tag"]].position((to_utc(sighting["ts"]) - START).total_seconds())
            lon, lat = grid.to_lonlat(x, y)
            assert distance_m(lon, lat, *place) <= tags.PHONE_RANGE_M + 0.2  # 6 decimals: 0.1 m
            seen += 1
    assert seen > 50
    assert len(from_phones) < len(messages)


def test_1475_detectors_stand_at_distinct_places_and_are_provisioned_as_beacon_detectors() -> None:
    scenario = tags.scenario(1475, 10, 1, START, "kakogawa")
    assert len({d.device_id for d in scenario.devices}) == 1475
    places = {tuple(d.model_params["location"]["coordinates"]) for d in scenario.devices}
    assert len(places) == 1475
    assert {d.model for d in scenario.devices} == {"BeaconDetector"}


def test_undecoded_uplinks_keep_only_the_raw_payload_and_leave_other_families_alone() -> None:
    flood_messages = list(itertools.islice(flood.scenario(2, 1, START, "a", "ttn", "k").messages, 10))
    plow_messages = list(itertools.islice(plows.scenario(2, 1, START, "a", "k").messages, 4))
    for message in flood_messages + plow_messages:
        raw = undecoded(message)
        if message.family == "tts":
            assert set(message.body["uplink_message"]) - set(raw.body["uplink_message"]) == {
                "decoded_payload"
            }
            assert raw.body["uplink_message"]["frm_payload"] == message.body["uplink_message"]["frm_payload"]
        elif message.family == "chirpstack":
            assert set(message.body) - set(raw.body) == {"object"}
        else:
            assert raw is message
        assert (raw.topic, raw.path, raw.at) == (message.topic, message.path, message.at)
    assert {m.family for m in flood_messages} == {"tts", "sigfox"}


# --- determinism ----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_messages_and_another_seed_other_ones() -> None:
    def first(name: str, seed: int) -> bytes:
        argv = [name, "--seed", str(seed), "--count", "5", "--detectors", "40", "--tags", "200"]
        scenario = make_scenario(build_parser().parse_args(argv), START)
        return orjson.dumps([(m.topic, m.at, m.body) for m in itertools.islice(scenario.messages, 300)])

    for name in ("flood", "plows", "tags"):
        assert first(name, 11) == first(name, 11)
        assert first(name, 11) != first(name, 12)
