"""The conformance pass after a recipe (recipe/conformance.py), on documents built in memory:
SR and KOS content trees, a presentation state, verifying observers, waveform annotations,
overlay groups, Type 1 dates, Type 2 and 2C attributes, and the cases the pass leaves alone.

The real-file counterpart (dciodvfy before and after, on every file of the real corpus) is
tests/realdata/test_real_validity.py.
"""

from __future__ import annotations

import copy
from typing import Any

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from recipe_helpers import make_dataset, recipe_of

from deid_workers.config import Settings
from deid_workers.recipe import deidentify, load_recipe
from deid_workers.recipe.funcs import hmac_uid
from deid_workers.recipe.iods import PRESENT, VALUE, requirements

KEY = b"conformance-test-key-0123456789abcdef"
SETTINGS = Settings(secret=KEY)
DEFAULT = load_recipe()

CT = "1.2.840.10008.5.1.4.1.1.2"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
IMAGE_UID = "1.2.826.0.1.3680043.10.543.1.1"
STUDY_UID = "1.2.826.0.1.3680043.10.543.2"


def _file(sop_class: str, **elements: Any) -> FileDataset:
    """A Part-10 dataset of a SOP Class with the Patient, Study and Series basics."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.543.9"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("doc.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.543.3"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PID-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.ReferringPhysicianName = "WHO^DR"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC-1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "ACME"
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _code(value: str, meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return Sequence([item])


def _item(relationship: str, value_type: str, **elements: Any) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = _code("121106", "Comment")
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _image_ref(uid: str = IMAGE_UID) -> Sequence:
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT
    ref.ReferencedSOPInstanceUID = uid
    return Sequence([ref])


def _evidence(uid: str = IMAGE_UID) -> Sequence:
    series = Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.10.543.4"
    series.ReferencedSOPSequence = _image_ref(uid)
    study = Dataset()
    study.StudyInstanceUID = STUDY_UID
    study.ReferencedSeriesSequence = Sequence([series])
    return Sequence([study])


def _observer(name: str = "SMITH^JANE") -> Sequence:
    observer = Dataset()
    observer.VerifyingObserverName = name
    observer.VerifyingOrganization = "General Hospital"
    observer.VerificationDateTime = "20240102101010"
    observer.VerifyingObserverIdentificationCodeSequence = _code("12345", "Smith")
    return Sequence([observer])


def _sr() -> FileDataset:
    nested = Sequence([_item("HAS PROPERTIES", "DATE", Date="20240101")])
    content = Sequence([
        _item("CONTAINS", "TEXT", TextValue="finding", ContentSequence=nested),
        _item("CONTAINS", "PNAME", PersonName="ROE^RICHARD"),
        _item("CONTAINS", "DATETIME", DateTime="20240102101010"),
        _item("CONTAINS", "UIDREF", UID=IMAGE_UID),
        _item("CONTAINS", "IMAGE", ReferencedSOPSequence=_image_ref()),
    ])
    request = Dataset()
    request.StudyInstanceUID = STUDY_UID
    request.AccessionNumber = "ACC-1"
    request.RequestedProcedureDescription = "CT HEAD"
    request.ReferencedStudySequence = _image_ref()
    return _file(COMPREHENSIVE_SR, Modality="SR", ValueType="CONTAINER",
                 ConceptNameCodeSequence=_code("11528-7", "Report"), ContinuityOfContent="SEPARATE",
                 ContentDate="20240102", ContentTime="101010", CompletionFlag="COMPLETE",
                 VerificationFlag="VERIFIED", VerifyingObserverSequence=_observer(),
                 ReferencedRequestSequence=Sequence([request]),
                 PerformedProcedureCodeSequence=_code("P1", "CT head"),
                 CurrentRequestedProcedureEvidenceSequence=_evidence(), ContentSequence=content)


def _run(ds: Dataset, recipe: Any = DEFAULT, **kwargs: Any) -> Dataset:
    return deidentify(ds, recipe, settings=SETTINGS, **kwargs)


# --- the default recipe on documents ---------------------------------------------------------


def test_sr_content_tree_is_kept_and_each_item_deidentified() -> None:
    out = _run(_sr())
    content = out.ContentSequence
    assert [i.ValueType for i in content] == ["TEXT", "PNAME", "DATETIME", "UIDREF", "IMAGE"]
    assert content[0].TextValue == "ANONYMOUS"  # free text: D of Content Sequence
    assert content[0].ConceptNameCodeSequence[0].CodeMeaning == "Comment"  # codes stay
    assert content[0].ContentSequence[0].Date == "19000101"  # D, one level down
    assert content[1].PersonName == "ANONYMOUS"
    assert content[2].DateTime == "19000101000000"
    new_uid = hmac_uid(KEY, IMAGE_UID)
    assert content[3].UID == new_uid
    assert content[4].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new_uid
    evidence = out.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new_uid


def test_sr_verifying_observers_are_kept_with_dummies_so_verified_stays_true() -> None:
    out = _run(_sr())
    assert out.VerificationFlag == "VERIFIED"
    observer = out.VerifyingObserverSequence[0]
    assert observer.VerifyingObserverName == "ANONYMOUS"
    assert observer.VerifyingOrganization == "ANONYMOUS"
    assert observer.VerificationDateTime == "19000101000000"
    assert len(observer.VerifyingObserverIdentificationCodeSequence) == 0  # Z; Type 2 there


def test_nested_type_2_attributes_the_recipe_removes_stay_present_and_empty() -> None:
    request = _run(_sr()).ReferencedRequestSequence[0]
    # X/Z in E.1-1, REMOVE in the recipe; Type 2 in a Referenced Request Sequence item
    assert request.RequestedProcedureDescription in (None, "")
    assert "ReferencedStudySequence" in request and len(request.ReferencedStudySequence) == 0
    assert request.AccessionNumber in (None, "")


def test_kos_references_stay_and_agree_with_the_evidence() -> None:
    kos = _file(KOS, Modality="KO", ValueType="CONTAINER", ContentDate="20240102",
                ContentTime="101010", ConceptNameCodeSequence=_code("113000", "Of Interest"),
                ContinuityOfContent="SEPARATE", CurrentRequestedProcedureEvidenceSequence=_evidence(),
                ContentSequence=Sequence([_item("CONTAINS", "IMAGE", ReferencedSOPSequence=_image_ref())]))
    out = _run(kos)
    assert len(out.ContentSequence) == 1
    ref = out.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    evidence = out.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref == evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == hmac_uid(KEY, IMAGE_UID)


def _gsps() -> FileDataset:
    text = Dataset()
    text.UnformattedTextValue = "DOE JOHN 1970"
    text.BoundingBoxAnnotationUnits = "PIXEL"
    text.BoundingBoxTopLeftHandCorner = [1.0, 1.0]
    text.BoundingBoxBottomRightHandCorner = [50.0, 10.0]
    text.BoundingBoxTextHorizontalJustification = "LEFT"
    annotation = Dataset()
    annotation.GraphicLayer = "LAYER1"
    annotation.ReferencedImageSequence = _image_ref()
    annotation.TextObjectSequence = Sequence([text])
    return _file(GSPS, Modality="PR", ContentLabel="LABEL", ContentDescription="notes",
                 PresentationCreationDate="20240102", PresentationCreationTime="101010",
                 ContentCreatorName="ROE^RICHARD", GraphicAnnotationSequence=Sequence([annotation]))


def test_person_identification_codes_become_dummies_where_they_are_kept() -> None:
    person = Dataset()
    person.PersonIdentificationCodeSequence = _code("EMP-4711", "Jane Roe")
    person.PersonIdentificationCodeSequence[0].CodingSchemeDesignator = "99HOSP"
    # a sequence no row of E.1-1 names, holding the Person Identification Macro
    ct = _file(CT, Modality="CT", RequestingPhysicianIdentificationSequence=Sequence([person]))
    out = _run(ct).RequestingPhysicianIdentificationSequence[0]
    code = out.PersonIdentificationCodeSequence[0]
    assert (code.CodeValue, code.CodeMeaning) == ("ANONYMOUS", "ANONYMOUS")
    assert code.CodingSchemeDesignator == "99HOSP"


def test_presentation_state_keeps_its_annotations_and_creation_date_and_time() -> None:
    out = _run(_gsps())
    annotation = out.GraphicAnnotationSequence[0]
    assert annotation.TextObjectSequence[0].UnformattedTextValue == "ANONYMOUS"
    assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == hmac_uid(KEY, IMAGE_UID)
    # X in E.1-1, but Type 1 in Presentation State Identification: a dummy, not a gap
    assert out.PresentationCreationDate == "19000101"
    assert out.PresentationCreationTime == "000000"


def test_waveform_annotations_go_as_a_whole_sequence() -> None:
    note = Dataset()
    note.UnformattedTextValue = "pt complains of chest pain"
    note.ReferencedWaveformChannels = [1, 1]
    ecg = _file(ECG, Modality="ECG", WaveformAnnotationSequence=Sequence([note]))
    out = _run(ecg)
    assert "WaveformAnnotationSequence" not in out  # X/D: removed, never left with zero items


def test_referenced_study_sequence_is_removed_not_left_empty() -> None:
    ct = _file(CT, Modality="CT", ReferencedStudySequence=_image_ref(),
               ReferencedPerformedProcedureStepSequence=_image_ref())
    out = _run(ct)
    assert "ReferencedStudySequence" not in out
    assert "ReferencedPerformedProcedureStepSequence" not in out
    # a user's BLANK: zero items is not allowed for this Type 3 sequence, so it goes
    blanked = _run(ct, recipe_of("BLANK ReferencedStudySequence"))
    assert "ReferencedStudySequence" not in blanked


def test_type_2c_attributes_stay_where_the_file_holds_them() -> None:
    cat = _file(CT, Modality="CT", PatientSpeciesDescription="cat", PatientBreedDescription="",
                ResponsiblePerson="OWNER^ANNA", ResponsibleOrganization="Vet Clinic")
    out = _run(cat)
    assert out.ResponsiblePerson in (None, "") and out.ResponsibleOrganization in (None, "")
    # a human's file never held them: nothing is added
    human = _run(_file(CT, Modality="CT"))
    assert "ResponsiblePerson" not in human and "ResponsibleOrganization" not in human


# --- user recipes: the pass by Type and IOD -----------------------------------------------------


def test_dates_are_dummies_where_type_1_and_empty_where_type_2() -> None:
    recipe = recipe_of("REMOVE ContentDate\nREMOVE ContentTime\nREMOVE StudyDate")
    sr = _run(_sr(), recipe)
    assert (sr.ContentDate, sr.ContentTime) == ("19000101", "000000")  # Type 1 in SR
    assert sr.StudyDate in (None, "")  # Type 2 in General Study
    ct = _run(_file(CT, Modality="CT", ContentDate="20240102", ContentTime="101010"), recipe)
    assert ct.ContentDate in (None, "") and ct.ContentTime in (None, "")  # Type 2C in an image


def test_a_type_1_attribute_emptied_by_a_recipe_gets_a_dummy() -> None:
    recipe = recipe_of("BLANK PresentationCreationDate\nREPLACE PresentationCreationTime var:t")
    out = _run(_gsps(), recipe, ids={"t": ""})
    assert out.PresentationCreationDate == "19000101"
    assert out.PresentationCreationTime == "000000"


def test_removing_verifying_observers_makes_the_document_unverified() -> None:
    for line in ("REMOVE VerifyingObserverSequence", "BLANK VerifyingObserverSequence"):
        out = _run(_sr(), recipe_of(line))
        assert "VerifyingObserverSequence" not in out, line
        assert out.VerificationFlag == "UNVERIFIED", line


def test_a_content_sequence_emptied_by_a_recipe_is_removed() -> None:
    out = _run(_sr(), recipe_of("REMOVE DateTime\nBLANK ContentSequence"))
    assert "ContentSequence" not in out  # Type 1C: zero items is never valid


def test_a_type_2_sequence_removed_comes_back_with_zero_items() -> None:
    out = _run(_sr(), recipe_of("REMOVE PerformedProcedureCodeSequence"))
    assert len(out.PerformedProcedureCodeSequence) == 0


def test_a_removed_uid_gets_its_keyed_pseudonym_and_the_file_meta_follows() -> None:
    ds = _file(CT, Modality="CT")
    original = ds.SOPInstanceUID
    out = _run(ds, recipe_of("REMOVE SOPInstanceUID"))
    assert out.SOPInstanceUID == hmac_uid(KEY, original)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_an_overlay_group_goes_whole_when_its_data_goes() -> None:
    ct = _file(CT, Modality="CT")
    for group in (0x6000, 0x6002):
        ct.add_new((group, 0x0010), "US", 2)
        ct.add_new((group, 0x0011), "US", 2)
        ct.add_new((group, 0x0040), "CS", "G")
        ct.add_new((group, 0x0050), "SS", [1, 1])
        ct.add_new((group, 0x0100), "US", 1)
        ct.add_new((group, 0x0102), "US", 0)
        ct.add_new((group, 0x3000), "OW", b"\x0f\x00")
    only_one = _run(ct, recipe_of("REMOVE 60023000"))
    assert not [t for t in only_one.keys() if t.group == 0x6002]
    assert len([t for t in only_one.keys() if t.group == 0x6000]) == 7
    out = _run(ct)  # the default recipe removes (60xx,3000)
    assert not [t for t in out.keys() if 0x6000 <= t.group <= 0x60FF]


def test_a_field_a_later_line_sets_again_is_left_as_set() -> None:
    out = _run(_sr(), recipe_of("REMOVE ContentDate\nADD ContentDate 20200101"))
    assert out.ContentDate == "20200101"


def test_unknown_sop_class_is_held_to_what_any_iod_requires() -> None:
    ds = _file("1.2.826.0.1.3680043.10.543.77.1", Modality="OT")  # a private SOP Class
    out = _run(ds, recipe_of("REMOVE StudyDate\nREMOVE PatientID"))
    assert out.StudyDate in (None, "") and out.PatientID in (None, "")


def test_without_a_sop_class_or_with_the_pass_off_the_recipe_stands_as_deid_runs_it() -> None:
    recipe = recipe_of("REMOVE StudyDate\nBLANK ReferencedStudySequence")
    classless = _file(CT, ReferencedStudySequence=_image_ref())
    del classless.SOPClassUID
    for out in (_run(classless, recipe),
                _run(_file(CT, ReferencedStudySequence=_image_ref()), recipe, conform_iod=False)):
        assert "StudyDate" not in out
        assert len(out.ReferencedStudySequence) == 0


def test_the_pass_adds_nothing_the_input_did_not_hold() -> None:
    for ds in (_sr(), _gsps(), make_dataset(SOPClassUID=CT)):
        before = _tags(ds)
        out = _run(copy.deepcopy(ds))
        added = _tags(out) - before
        # ADD lines of the recipe, and the provenance sequence steps.py writes
        assert added <= {"PatientIdentityRemoved", "DeidentificationMethod"}, added


def _tags(ds: Dataset, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for element in ds:
        name = prefix + (element.keyword or str(element.tag))
        names.add(name)
        if element.VR == "SQ":
            for item in element.value:
                names |= _tags(item, name + ">")
    return names


def test_remove_all_leaves_only_what_the_iod_requires_and_no_private_field() -> None:
    ds = make_dataset(SOPClassUID=CT)
    out = _run(ds, recipe_of("REMOVE ALL"))
    required = requirements(CT)
    left = {int(t) for t in out.keys()}
    assert left and not [t for t in left if t >> 16 & 1]
    assert all(required.of((t,)) in (VALUE, PRESENT) for t in left)
    # attributes of table E.1-1: a dummy, a keyed UID, or (Type 2) empty
    assert out.SOPInstanceUID == hmac_uid(KEY, ds.SOPInstanceUID)
    assert out.PatientName in (None, "") and out.StudyDate in (None, "")
    assert "InstitutionName" not in out  # Type 3: gone
    # others are not identifying: the input's values, so the object stays what it was
    assert (out.SOPClassUID, out.Modality, out.Rows, out.Columns) == (CT, "CT", 2, 2)


def test_a_private_sequence_blanked_stays_with_zero_items() -> None:
    ds = _file(CT, Modality="CT")
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "SQ", _image_ref())
    out = _run(ds, recipe_of("BLANK (0029,\"ACME 1.0\",10)"))
    assert len(out[0x00291010].value) == 0  # no IOD speaks of it: BLANK's result stands
