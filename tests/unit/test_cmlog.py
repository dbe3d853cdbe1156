"""Configuration Manager log writer (lab/cmlog.py) and parser (probes/cmlog.py): golden lines of both formats."""
from __future__ import annotations

import codecs
import datetime as dt
import io
import random
import re
import threading

import pytest

from pytest_vpro.lab.cmlog import AMTOPMGR_MESSAGES, CmLogWriter, amtopmgr_message, format_ccm, format_sms
from pytest_vpro.probes.cmlog import (
    EVENT_PATTERNS,
    LogLine,
    LogReader,
    client_events,
    compile_patterns,
    events,
    parse_entry,
    parse_text,
)

PDT = dt.timezone(dt.timedelta(hours=-7))
CET = dt.timezone(dt.timedelta(hours=1))
WHEN = dt.datetime(2015, 6, 26, 14, 24, 33, 329000, tzinfo=PDT)
UUID = "4c4c4544-0031-3910-8051-b4c04f4e3258"
FIELDS = {"fqdn": "pc0001.vprolab.test", "uuid": UUID, "ip": "10.1.2.3", "mode": "PKI", "retry": 2,
          "reason": "TLS handshake failed: certificate chain not trusted"}

# Hand-written in the shapes docs/protocols.md describes (and of Trace32 screenshots), not produced by our writer.
SMS_SAMPLE = ("SMS_EXECUTIVE started SMS_AMT_OPERATION_MANAGER as thread ID 3196 (0xC7C)."
              "  $$<SMS_AMT_OPERATION_MANAGER><06-26-2015 14:24:33.329+420><thread=3196 (0xC7C)>")
CCM_SAMPLE = ('<![LOG[AMT Provisioning: Sending ZTC request to the site]LOG]!><time="14:24:33.329+420" '
              'date="06-26-2015" component="OOBMGMT" context="" type="1" thread="1256" file="oobmgmt.cpp:512">')


def test_sms_golden_line():
    line = format_sms("Hello", when=WHEN, thread=3196)
    assert line == "Hello  $$<SMS_AMT_OPERATION_MANAGER><06-26-2015 14:24:33.329+420><thread=3196 (0xC7C)>"
    assert parse_entry(line) == LogLine(WHEN, "SMS_AMT_OPERATION_MANAGER", 3196, "Hello", "sms")


def test_ccm_golden_line():
    line = format_ccm("Hi", component="OOBMGMT", when=WHEN.astimezone(CET), thread=1256, type_=2, file="x.cpp:1")
    assert line == ('<![LOG[Hi]LOG]!><time="22:24:33.329-60" date="06-26-2015" component="OOBMGMT" context="" '
                    'type="2" thread="1256" file="x.cpp:1">')
    parsed = parse_entry(line)
    assert parsed == LogLine(WHEN, "OOBMGMT", 1256, "Hi", "ccm", 2, "x.cpp:1")
    assert parsed.time.utcoffset() == dt.timedelta(hours=1)


def test_utc_bias_is_written_as_plus_000():
    assert "<01-02-2009 03:04:05.006+000>" in format_sms("x", when=dt.datetime(2009, 1, 2, 3, 4, 5, 6000,
                                                                               tzinfo=dt.timezone.utc))


def test_hand_written_samples():
    sms, ccm = parse_entry(SMS_SAMPLE), parse_entry(CCM_SAMPLE)
    assert (sms.format, sms.component, sms.thread, sms.time) == ("sms", "SMS_AMT_OPERATION_MANAGER", 3196, WHEN)
    assert sms.message.endswith("(0xC7C).")
    assert (ccm.format, ccm.component, ccm.thread, ccm.time, ccm.file) == ("ccm", "OOBMGMT", 1256, WHEN,
                                                                          "oobmgmt.cpp:512")
    # a line without bias or milliseconds still parses; its time is naive
    bare = parse_entry("x  $$<SMS_AMT_OPERATION_MANAGER><06-26-2015 14:24:33><thread=1>")
    assert bare.time == dt.datetime(2015, 6, 26, 14, 24, 33) and bare.thread == 1
    # an impossible date keeps the entry, without a time
    assert parse_entry("x  $$<C><13-45-2015 14:24:33.000+000><thread=1 (0x1)>").time is None


def test_multi_line_sms_entry_and_crlf():
    text = "first line\r\nsecond line  $$<SMS_AMT_OPERATION_MANAGER><06-26-2015 14:24:33.329+420><thread=7 (0x7)>\r\n"
    (entry,) = parse_text(text)
    assert entry.message == "first line\nsecond line"


def test_writer_round_trip_every_event(tmp_path):
    w = CmLogWriter(tmp_path / "AMTOPMGR.LOG")
    for event in AMTOPMGR_MESSAGES:
        w.event(event, when=WHEN, thread=3196, **FIELDS)
    raw = (tmp_path / "AMTOPMGR.LOG").read_bytes()
    assert raw.count(b"\r\n") == len(AMTOPMGR_MESSAGES)
    with open(tmp_path / "AMTOPMGR.LOG", "rb") as fh:
        reader = LogReader(fh)
        lines = list(reader)
    assert len(lines) == len(AMTOPMGR_MESSAGES) and reader.skipped == reader.truncated == 0
    found = {e.kind: e for evs in events(lines).values() for e in evs}
    for kind in EVENT_PATTERNS:
        if kind not in AMTOPMGR_MESSAGES:
            continue  # OOBMGMT.LOG events: tests/unit/test_cmlog_golden.py
        assert kind in found, kind
        ev = found[kind]
        assert ev.uuid == (UUID if "{uuid}" in AMTOPMGR_MESSAGES[kind] else None) and ev.time == WHEN
        assert ev.fqdn == ("pc0001.vprolab.test" if "{fqdn}" in AMTOPMGR_MESSAGES[kind] else None)
        assert ev.ip == ("10.1.2.3" if "(?P<ip>" in EVENT_PATTERNS[kind][0] else None)
    assert found["provisioning_failed"].reason == FIELDS["reason"]
    assert found["hello_received"].ip == "10.1.2.3"
    assert {"hello_not_imported", "hello_malformed"}.isdisjoint(found)  # not events


def test_ccm_writer_round_trip(tmp_path):
    w = CmLogWriter(tmp_path / "OOBMGMT.LOG", fmt="ccm", component="OOBMGMT", file="oobmgmt.cpp:1")
    w.event("ztc_request", when=WHEN, thread=1256, **FIELDS)
    w.event("provisioning_failed", when=WHEN, thread=1256, **FIELDS)
    lines = parse_text((tmp_path / "OOBMGMT.LOG").read_bytes())
    assert [(ln.format, ln.type) for ln in lines] == [("ccm", 1), ("ccm", 3)]
    assert [e.kind for e in events(lines)["pc0001.vprolab.test"]] == ["ztc_request", "provisioning_failed"]


def test_unknown_fqdn_keys_by_uuid():
    line = parse_entry(format_sms(amtopmgr_message("hello_received", uuid=UUID, ip="10.1.2.3", mode="PKI",
                                                   retry=0, fqdn="")))
    by_client = events([line])
    assert list(by_client) == [UUID] and by_client[UUID][0].fqdn is None
    assert client_events(by_client, fqdn="pc9.test", ip="10.1.2.3") == by_client[UUID]
    assert client_events(by_client, fqdn="pc9.test") == []


def test_truncated_last_line_is_counted():
    good = format_sms("Start provisioning AMT device a.test (1.2.3.4), UUID " + UUID, when=WHEN)
    data = (good + "\r\n" + good[:40]).encode()
    reader = LogReader(io.BytesIO(data))
    assert [ln.message for ln in reader] == [parse_entry(good).message]
    assert reader.truncated == 1


def test_unclosed_ccm_entry_before_the_next_one_is_counted():
    text = '<![LOG[cut off here\n' + CCM_SAMPLE + "\n"
    reader = LogReader(io.StringIO(text))
    assert [ln.component for ln in reader] == ["OOBMGMT"] and reader.truncated == 1


def test_garbage_line_is_skipped_and_counted():
    data = (SMS_SAMPLE + "\r\n").encode() + b"\x00\x01\xff\xfe\x80garbage\x07\r\n" + (CCM_SAMPLE + "\r\n").encode()
    reader = LogReader(io.BytesIO(data))
    assert [ln.format for ln in reader] == ["sms", "ccm"]
    assert reader.skipped == 1


@pytest.mark.parametrize("codec,bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
                                       ("utf-8", codecs.BOM_UTF8), ("utf-16-le", b"")])
def test_utf16_and_bom(codec, bom):
    text = SMS_SAMPLE + "\r\n" + CCM_SAMPLE + "\r\n"
    lines = list(LogReader(io.BytesIO(bom + text.encode(codec))))
    assert [ln.format for ln in lines] == ["sms", "ccm"] and lines[0].time == WHEN


def test_overlong_line_is_dropped_and_counted():
    long = "A" * 100_000 + "  $$<C><06-26-2015 14:24:33.329+420><thread=1 (0x1)>"
    data = "\r\n".join([SMS_SAMPLE, long, CCM_SAMPLE, ""]).encode()
    reader = LogReader(io.BytesIO(data), max_line=4096)
    assert [ln.format for ln in reader] == ["sms", "ccm"] and reader.overlong == 1


def test_overlong_last_line_without_newline():
    reader = LogReader(io.BytesIO((SMS_SAMPLE + "\n").encode() + b"B" * 200_000), max_line=1024)
    assert len(list(reader)) == 1 and reader.overlong == 1


def test_random_bytes_never_raise():
    rnd = random.Random(95)
    for _ in range(200):
        blob = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 600)))
        mixed = blob + (SMS_SAMPLE + "\n").encode() + blob[: rnd.randrange(0, 50)]
        list(LogReader(io.BytesIO(mixed), max_line=256))


def test_caller_patterns_extend_the_table():
    line = parse_entry("Auto-worker: task PROVISION for MACHINE pc0007.corp.test done.  $$<C><06-26-2015 "
                       "14:24:33.329+420><thread=1 (0x1)>")
    assert events([line]) == {}
    custom = {"second_stage_completed": [r"task PROVISION for MACHINE (?P<fqdn>\S+) done"],
              "site_specific": r"Auto-worker: task (?P<reason>\w+)"}
    (ev,) = events([line], custom)["pc0007.corp.test"]
    assert ev.kind == "second_stage_completed"  # caller's patterns are tried first within the table
    assert events([line], {"site_specific": r"Auto-worker: task (?P<reason>\w+)"})[""][0].reason == "PROVISION"


def test_bad_caller_patterns_are_refused_with_the_event_name():
    with pytest.raises(ValueError, match="'hello_received' does not compile"):
        compile_patterns({"hello_received": "(unclosed"})
    with pytest.raises(ValueError, match="unknown group"):
        compile_patterns({"hello_received": r"(?P<host>\S+)"})
    assert all(isinstance(rx, re.Pattern) for rxs in compile_patterns().values() for rx in rxs)


def test_several_writers_in_threads_never_interleave(tmp_path):
    path = tmp_path / "AMTOPMGR.LOG"
    writers = [CmLogWriter(path), CmLogWriter(path)]

    def work(w: CmLogWriter, n: int) -> None:
        for i in range(150):
            w.event("hello_received", thread=n, fqdn=f"pc{n}-{i}.test", uuid=UUID, ip="10.0.0.1", mode="PKI",
                    retry=i)

    threads = [threading.Thread(target=work, args=(writers[i % 2], i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(path, "rb") as fh:
        reader = LogReader(fh)
        lines = list(reader)
    assert len(lines) == 600 and reader.skipped == reader.truncated == 0
    assert len(events(lines)) == 600


# Real AMTOPMGR.LOG lines, as the Intel vPro Expert Center post "Expired GoDaddy vPro provisioning certificate in a
# SCCM environment" (2009-12-15) quotes them from Trace32 (message, component, time, thread), in the file's format.
QUOTED = (
    "Error: The provisioning certificate with the thumbprint 55B7AF313A725CA10BB47A382494A3BD2927D1FB will expire in "
    "4 day(s). Please ensure that this certificate is renewed. (CertID = 1)"
    "  $$<SMS_AMT_OPERATION_MANAGER><11-19-2009 11:35:01.000+300><thread=2880 (0xB40)>\r\n"
    "Remove unused provision certificate with hash 55B7AF313A725CA10BB47A382494A3BD2927D1FB from memory."
    "  $$<SMS_AMT_OPERATION_MANAGER><11-23-2009 11:35:05.000+300><thread=2700 (0xA8C)>\r\n")


def test_publicly_quoted_lines_are_recognised_and_their_absence_is_decisive():
    from pytest_vpro.probes.cmlog import SOURCED, decisive

    (expiring, unloaded) = events(parse_text(QUOTED))[""]
    assert (expiring.kind, expiring.reason) == ("provisioning_certificate_expiring",
                                                "55B7AF313A725CA10BB47A382494A3BD2927D1FB will expire in 4 day(s)")
    assert (unloaded.kind, unloaded.reason) == ("provisioning_certificate_unloaded",
                                                "55B7AF313A725CA10BB47A382494A3BD2927D1FB")
    assert expiring.line.component == "SMS_AMT_OPERATION_MANAGER" and expiring.line.thread == 2880
    assert set(SOURCED) == {"provisioning_certificate_expiring", "provisioning_certificate_unloaded"}
    assert decisive("provisioning_certificate_expiring") and not decisive("hello_received")
    assert decisive("hello_received", {"hello_received": [r"Hello from (?P<uuid>\S+)"]})


def test_the_lab_writes_the_quoted_certificate_lines_word_for_word():
    from pytest_vpro.lab.site_server import CERTIFICATE_EXPIRING, CERTIFICATE_UNLOADED

    quoted = [ln.message for ln in parse_text(QUOTED)]
    thumbprint = "55B7AF313A725CA10BB47A382494A3BD2927D1FB"
    assert quoted == [CERTIFICATE_EXPIRING.format(thumbprint=thumbprint, days=4),
                      CERTIFICATE_UNLOADED.format(thumbprint=thumbprint)]


def test_writer_rolls_over_to_the_lo_history(tmp_path):
    log = CmLogWriter(tmp_path / "AMTOPMGR.LOG", max_bytes=400)
    for retry in range(6):
        log.event("hello_received", fqdn="pc0001.vprolab.test", uuid=UUID, ip="10.0.0.1", mode="PKI", retry=retry)
    assert log.history == tmp_path / "AMTOPMGR.lo_"
    assert log.path.stat().st_size <= 400 and log.history.stat().st_size <= 400
    kept = [e.retry for es in events(parse_text(log.history.read_bytes() + log.path.read_bytes())).values()
            for e in es]
    assert kept == sorted(kept) and kept[-1] == 5 and kept[0] > 0  # older history was overwritten, as SCCM does
    log.rotate()
    assert not log.path.exists() and [e.retry for es in events(parse_text(log.history.read_bytes())).values()
                                      for e in es] == [5]
