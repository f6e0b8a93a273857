"""Built-in deid_func helpers and the keyed pseudonyms (spec §2.6, Part A §4)."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import UID
from recipe_helpers import make_dataset, recipe_of

from deid_workers.config import Settings
from deid_workers.recipe import deidentify
from deid_workers.recipe.funcs import hmac_id, hmac_uid, jitter_value, shift_days

KEY_A = Settings(secret=b"key-a-0123456789abcdef0123456789ab")
KEY_B = Settings(secret=b"key-b-0123456789abcdef0123456789ab")
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def run(header: str, settings=KEY_A, **elements):
    return deidentify(make_dataset(**elements), recipe_of(header), settings=settings)


def test_jitter_func() -> None:
    assert run("REPLACE StudyDate deid_func:jitter days=2 years=1").StudyDate == "20210116"
    assert run("REPLACE StudyDate deid_func:jitter").StudyDate == "20200116"


def test_pydicom_uuid_stable_and_prefix() -> None:
    a = run("REPLACE StudyInstanceUID deid_func:pydicom_uuid").StudyInstanceUID
    b = run("REPLACE StudyInstanceUID deid_func:pydicom_uuid").StudyInstanceUID
    assert a == b and a.startswith("2.25.") and UID(a).is_valid
    c = run("REPLACE StudyInstanceUID deid_func:pydicom_uuid prefix=1.2.3.").StudyInstanceUID
    assert c.startswith("1.2.3.")
    r1 = run("REPLACE StudyInstanceUID deid_func:pydicom_uuid stable_remapping=false")
    r2 = run("REPLACE StudyInstanceUID deid_func:pydicom_uuid stable_remapping=false")
    assert r1.StudyInstanceUID != r2.StudyInstanceUID


def test_dicom_basic_suffix_uuid() -> None:
    assert run("REPLACE StudyInstanceUID deid_func:dicom_uuid org_root=1.2.3").StudyInstanceUID.startswith("1.2.3.")
    basic = run("REPLACE Manufacturer deid_func:basic_uuid").Manufacturer
    assert re.fullmatch(r"[0-9a-f-]{36}", basic)
    assert run("REPLACE Manufacturer deid_func:suffix_uuid").Manufacturer.startswith("manufacturer-")


def test_hmac_uid_valid_deterministic_keyed() -> None:
    a = run("REPLACE StudyInstanceUID deid_func:hmac_uid").StudyInstanceUID
    again = run("REPLACE StudyInstanceUID deid_func:hmac_uid").StudyInstanceUID
    other_key = run("REPLACE StudyInstanceUID deid_func:hmac_uid", KEY_B).StudyInstanceUID
    assert a == again != other_key
    assert a.startswith("2.25.") and len(a) <= 64 and UID_RE.match(a)
    rooted = hmac_uid(b"k", "1.2.3", "1.2.840.99999.1.2.3.4.5.6.7.8.9.10")
    assert rooted.startswith("1.2.840.99999.") and len(rooted) == 64 and UID_RE.match(rooted)
    # same original anywhere -> same pseudonym: nested references stay linked
    out = run("REPLACE contains:SOPInstanceUID deid_func:hmac_uid",
              ReferencedImageSequence=None)
    assert out.SOPInstanceUID == hmac_uid(KEY_A.secret, make_dataset().SOPInstanceUID)


def test_hmac_id() -> None:
    out = run("REPLACE PatientID deid_func:hmac_id prefix=ANON-")
    assert out.PatientID == hmac_id(KEY_A.secret, "SENTINEL-ID-1", "ANON-")
    assert re.fullmatch(r"ANON-[A-Z2-7]{16}", out.PatientID)
    assert hmac_id(KEY_B.secret, "SENTINEL-ID-1") != hmac_id(KEY_A.secret, "SENTINEL-ID-1")


def test_date_shift_same_per_patient_across_files() -> None:
    s = Settings(secret=b"key-a-0123456789abcdef0123456789ab", date_shift_min=-30, date_shift_max=-10)
    days = shift_days(KEY_A.secret, "SENTINEL-ID-1", -30, -10)
    assert -30 <= days <= -10
    expected = jitter_value("20200115", "DA", days)
    for uid in ("1.2.3.1", "1.2.3.2"):  # two files of one patient
        out = deidentify(make_dataset(SOPInstanceUID=uid),
                         recipe_of("JITTER StudyDate deid_func:date_shift\n"
                                   "REPLACE PatientBirthDate deid_func:date_shift\n"
                                   "JITTER StudyTime deid_func:date_shift"), settings=s)
        assert out.StudyDate == expected
        assert out.PatientBirthDate == jitter_value("19700101", "DA", days)
        assert out.StudyTime == "011635.943"
    other = deidentify(make_dataset(PatientID="OTHER"), recipe_of(
        "JITTER StudyDate deid_func:date_shift min=-5 max=-5"), settings=s)
    assert other.StudyDate == "20200110"


def test_key_resolved_only_when_needed() -> None:
    class NoKey:
        entity_field = "PatientID"

        def resolve_secret(self):
            raise AssertionError("key read")

    assert run("REPLACE PatientID x", NoKey()).PatientID == "x"
    with pytest.raises(AssertionError):
        run("REPLACE PatientID deid_func:hmac_id", NoKey())


def test_jitter_value_formats() -> None:
    assert jitter_value("20200101120000+0100", "DT", 1) == "20200102120000.000000+0100"
    assert jitter_value("20200101", "LO", 1) == "20200102"
    assert jitter_value("hello", "LO", 1) == "hello"
    assert jitter_value("120000", "TM", 1) is None
