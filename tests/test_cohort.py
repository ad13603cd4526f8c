"""core.cohort: the per-study function, the CLI, LocalCluster and real scheduler/worker processes, resume."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import cohort
from core.cohort import StudySource, discover_studies, isotropic, measure_study, read_table, run_cohort
from tests.factory import ct_series

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (24, 64, 64)
# Two box lungs of 10 x 16 x 12 voxels each (1 mm voxels: 1.92 mL each), part of the left one emphysematous.
LUNG_BOXES = ((slice(6, 16), slice(20, 36), slice(14, 26)), (slice(6, 16), slice(20, 36), slice(38, 50)))
LUNG_ML = 2 * 10 * 16 * 12 / 1000.0


def phantom(emphysema_slices: int = 0) -> np.ndarray:
    """A body of soft tissue (40 HU) in air, two box lungs at -850 HU; the left lung's first
    ``emphysema_slices`` slices at -980 HU (emphysema: below -950)."""
    z, y, x = np.indices(SHAPE)
    vol = np.full(SHAPE, -1000, dtype=np.int16)
    body = ((y - 32) / 26.0) ** 2 + ((x - 32) / 29.0) ** 2 <= 1
    vol[body] = 40
    for box in LUNG_BOXES:
        vol[box] = -850
    left = LUNG_BOXES[0]
    vol[left[0].start:left[0].start + emphysema_slices, left[1], left[2]] = -980
    return vol


def emphysema_pct(emphysema_slices: int) -> float:
    return 100.0 * emphysema_slices * 16 * 12 / (2 * 10 * 16 * 12)


def write_study(folder: Path, hu: np.ndarray, *, spacing=(1.0, 1.0, 1.0), positions=None, uid="1.2.3.9",
                study_uid: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"StudyInstanceUID": study_uid} if study_uid else None
    kwargs = {"extra": extra} if extra else {}
    for name, data in ct_series(hu, spacing=spacing, positions=positions, series_uid=uid,
                                slice_thickness=spacing[0], **kwargs):
        (folder / name.replace("/", "_")).write_bytes(data)


def write_cohort(root: Path) -> dict[str, dict]:
    """Six studies with known answers: name -> expected (lung mL, emphysema %, status, tolerance)."""
    write_study(root / "a_plain", phantom(0))
    write_study(root / "b_emphysema", phantom(5))
    thick = phantom(10)[::2]  # 2 mm slices, the whole left lung emphysematous: resampled to 1 mm
    write_study(root / "c_thick", thick, spacing=(2.0, 1.0, 1.0))
    tilt = np.tan(np.radians(10.0))
    positions = np.array([(0.0, k * tilt, float(k)) for k in range(SHAPE[0])])
    write_study(root / "d_tilted", phantom(10), positions=positions)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in ct_series(phantom(3), spacing=(1.0, 1.0, 1.0), series_uid="1.2.3.10"):
            zf.writestr(name, data)
    (root / "e_zipped.zip").write_bytes(buf.getvalue())
    (root / "f_broken").mkdir()
    for k in range(3):
        (root / "f_broken" / f"{k}.dcm").write_bytes(b"DICM" + bytes(range(256)) * 4)
    return {
        "a_plain": dict(ml=LUNG_ML, emph=0.0, tol=0.001),
        "b_emphysema": dict(ml=LUNG_ML, emph=emphysema_pct(5), tol=0.001),
        # Linear interpolation between 2 mm slices: each lung gains a partial-volume plane at each
        # end (-470 and -405 HU: lung, not emphysema), so 11 planes per lung, 9 of them emphysema on the left.
        "c_thick": dict(ml=2 * 11 * 16 * 12 / 1000.0, emph=100.0 * 9 / 22, tol=0.001),
        # Untilting shifts each plane by a fraction of a row: the lungs' edge rows mix with tissue
        # (-980 and 40 HU make lung that is not emphysema), so the index reads a few points low.
        "d_tilted": dict(ml=LUNG_ML, emph=50.0, tol=0.05, emph_abs=5.0),
        "e_zipped.zip": dict(ml=LUNG_ML, emph=emphysema_pct(3), tol=0.001),
        "f_broken": None,
    }


def comparable(rows: list[dict]) -> list[dict]:
    """Rows without the timing (the only column that may differ between two runs)."""
    return [{k: v for k, v in sorted(r.items()) if k != "seconds"} for r in sorted(rows, key=lambda r: r["study"])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cohort_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cohort")
    return root, write_cohort(root)


@pytest.fixture(scope="module")
def serial_rows(cohort_root) -> list[dict]:
    root, _ = cohort_root
    return [measure_study(s) for s in discover_studies(root)]


class TestIsotropic:
    def test_one_mm_is_unchanged(self):
        from core import Volume

        hu = phantom(3)
        vol = Volume(hu, (1.0, 1.0, 1.0), "1", "CT", units="HU")
        iso = isotropic(vol, spacing=1.0)
        assert iso.voxels.dtype == np.int16
        np.testing.assert_array_equal(iso.voxels, hu)

    def test_thick_slices_are_interpolated_at_exact_spacing(self):
        from core import Volume

        hu = np.zeros((3, 4, 5), dtype=np.int16)
        hu[1] = 100
        hu[2] = 300
        vol = Volume(hu, (2.5, 0.5, 0.5), "1", "CT", units="HU")
        iso = isotropic(vol, spacing=1.0)
        assert iso.shape == (6, 2, 3)  # 5 mm deep -> 6 planes; 1.5 mm across rows -> 2; 2 mm -> 3
        assert iso.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(iso.voxels[:, 0, 0], [0, 40, 80, 140, 220, 300])
        np.testing.assert_allclose(iso.positions[:, 2], np.arange(6.0))

    def test_spacing_must_be_positive(self):
        from core import Volume

        vol = Volume(np.zeros((2, 2, 2), np.int16), (1.0, 1.0, 1.0), "1", "CT", units="HU")
        with pytest.raises(ValueError, match="spacing must be a positive number of mm, got 0"):
            isotropic(vol, spacing=0)


class TestDiscoverStudies:
    def test_sub_folders_and_zips_are_studies(self, cohort_root):
        root, expected = cohort_root
        assert [s.name for s in discover_studies(root)] == sorted(expected)

    def test_a_flat_folder_is_split_by_study_uid(self, tmp_path):
        write_study(tmp_path, phantom(0)[:4], uid="1.2.3.1", study_uid="1.2.840.1")
        for name, data in ct_series(phantom(0)[:6], series_uid="1.2.3.2", extra={"StudyInstanceUID": "1.2.840.2"},
                                    names=lambda k: f"other{k}.dcm"):
            (tmp_path / name).write_bytes(data)
        studies = discover_studies(tmp_path)
        assert [(s.name, len(s.paths)) for s in studies] == [("1.2.840.1", 4), ("1.2.840.2", 6)]

    def test_root_must_be_a_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="is not a folder"):
            discover_studies(tmp_path / "nowhere")


class TestStudiesInZip:
    @staticmethod
    def zip_of(names: list[str]) -> zipfile.ZipFile:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for n in names:
                zf.writestr(n, b"x" * 10)
        return zipfile.ZipFile(buf)

    def test_folders_and_zips_at_the_top_are_studies(self):
        zf = self.zip_of(["a/1.dcm", "a/2.dcm", "b/s/1.dcm", "c.zip", "__MACOSX/a/._1.dcm", "loose.dcm"])
        found = cohort.studies_in_zip(zf, label="cohort.zip")
        assert [(s.name, s.members, s.nbytes) for s in found] == [
            ("a", ("a/1.dcm", "a/2.dcm"), 20), ("b", ("b/s/1.dcm",), 10), ("c.zip", ("c.zip",), 10),
            ("cohort.zip", ("loose.dcm",), 10)]

    def test_one_enclosing_folder_is_looked_into(self):
        zf = self.zip_of(["root/a/1.dcm", "root/b/1.dcm"])
        assert [s.name for s in cohort.studies_in_zip(zf)] == ["a", "b"]

    def test_one_study_folder_stays_one_study(self):
        zf = self.zip_of(["a/1.dcm", "a/2.dcm"])
        assert [s.name for s in cohort.studies_in_zip(zf)] == ["a"]

    def test_a_study_read_from_the_zip_is_measured(self, cohort_root, serial_rows):
        root, _ = cohort_root
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for f in sorted((root / "b_emphysema").iterdir()):
                zf.write(f, f"b_emphysema/{f.name}")
        zf = zipfile.ZipFile(buf)
        study, = cohort.studies_in_zip(zf)
        row = measure_study(study.source(zf))
        assert comparable([row]) == comparable([r for r in serial_rows if r["study"] == "b_emphysema"])


class TestMeasureStudy:
    def test_known_answers(self, serial_rows, cohort_root):
        _, expected = cohort_root
        by_name = {r["study"]: r for r in serial_rows}
        for name, want in expected.items():
            row = by_name[name]
            if want is None:
                continue
            assert row["status"] == "ok", (name, row["reason"])
            assert row["lung_volume_ml"] == pytest.approx(want["ml"], rel=want["tol"]), name
            assert row["emphysema_index_pct"] == pytest.approx(want["emph"], abs=want.get("emph_abs", 0.001)), name
            assert row["spacing_mm"] == 1.0
            assert row["series_choice"].startswith("largest axial CT")

    def test_exact_measures_of_a_one_mm_study(self, serial_rows):
        row = next(r for r in serial_rows if r["study"] == "b_emphysema")
        assert row["lung_volume_ml"] == pytest.approx(3.84)
        assert row["emphysema_index_pct"] == pytest.approx(25.0)
        assert row["perc15_hu"] == -980.0  # 25 % of the lung at -980, the rest at -850
        assert row["mean_lung_hu"] == pytest.approx(0.25 * -980 + 0.75 * -850)
        assert row["band_lung_ml"] == pytest.approx(2.88)  # -950..-500: the lung not emphysematous
        assert row["slices"] == 24 and row["iso_shape"] == "24x64x64" and row["tilt_deg"] == 0.0
        hist = np.array(row["hu_histogram"].split(), dtype=int)
        assert hist.sum() == 24 * 64 * 64
        assert hist[np.searchsorted(cohort.HIST_EDGES, -980, side="right") - 1] == 5 * 16 * 12

    def test_tilt_is_measured_and_corrected(self, serial_rows):
        row = next(r for r in serial_rows if r["study"] == "d_tilted")
        assert row["tilt_deg"] == pytest.approx(10.0, abs=0.05)
        assert "gantry tilt of 10.0° removed" in row["warnings"]

    def test_thick_slices(self, serial_rows):
        row = next(r for r in serial_rows if r["study"] == "c_thick")
        assert row["source_spacing_mm"] == "2 1 1" and row["slice_thickness_mm"] == 2.0
        assert row["iso_shape"] == "23x64x64"

    def test_a_broken_study_costs_its_row(self, serial_rows):
        row = next(r for r in serial_rows if r["study"] == "f_broken")
        assert row["status"] == "failed"
        assert row["reason"].startswith("no series could be assembled")

    def test_fractional_rescale_is_measured_in_whole_hu(self, tmp_path):
        for name, data in ct_series(phantom(5).astype(float), spacing=(1.0, 1.0, 1.0), slope=0.5, intercept=-1024.25):
            (tmp_path / name.replace("/", "_")).write_bytes(data)
        row = measure_study(StudySource("float", (str(tmp_path),)))
        assert row["status"] == "ok", row["reason"]
        assert row["lung_volume_ml"] == pytest.approx(3.84) and row["emphysema_index_pct"] == pytest.approx(25.0)

    def test_no_ct_in_the_study(self, tmp_path):
        for name, data in ct_series(phantom(0)[:4], modality="MR", intercept=0.0):
            (tmp_path / name.replace("/", "_")).write_bytes(data)
        row = measure_study(StudySource("mr", (str(tmp_path),)))
        assert row["status"] == "failed" and row["reason"] == "no CT series in the study (found MR)"

    def test_no_patient_data_in_the_row(self, serial_rows):
        text = repr(serial_rows)
        assert "DOE" not in text and "ID-0001" not in text

    def test_nifti_arrays_have_the_right_affine(self, cohort_root, tmp_path):
        import nibabel as nib

        root, _ = cohort_root
        row = measure_study(StudySource("c_thick", (str(root / "c_thick"),)), arrays="nifti", out_dir=str(tmp_path))
        assert row["arrays"] == "c_thick_hu.nii.gz c_thick_lungs.nii.gz"
        img = nib.load(tmp_path / "arrays" / "c_thick_hu.nii.gz")
        mask = nib.load(tmp_path / "arrays" / "c_thick_lungs.nii.gz")
        assert img.shape == (64, 64, 23) and mask.shape == img.shape
        np.testing.assert_allclose(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))  # LPS origin 0, 1 mm
        assert int(np.asarray(mask.dataobj).sum()) == pytest.approx(row["lung_volume_ml"] * 1000)

    def test_npz_arrays(self, cohort_root, tmp_path):
        root, _ = cohort_root
        row = measure_study(StudySource("a_plain", (str(root / "a_plain"),)), arrays="npz", out_dir=str(tmp_path))
        with np.load(tmp_path / "arrays" / "a_plain.npz") as z:
            np.testing.assert_array_equal(z["hu"], phantom(0))
            assert z["lungs"].sum() == 2 * 10 * 16 * 12 and tuple(z["spacing"]) == (1.0, 1.0, 1.0)
        assert row["arrays"] == "a_plain.npz"

    def test_bad_arrays_option(self):
        row = measure_study(StudySource("x", ()), arrays="tiff")
        assert row["status"] == "failed" and "arrays must be one of" in row["reason"]


@pytest.fixture
def plain_main(monkeypatch):
    """A bare ``__main__``, as under ``python -m core.cohort``: AppTests earlier in the session leave a page
    script there, which LocalCluster's spawned workers would run again."""
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


@pytest.mark.usefixtures("plain_main")
class TestRunCohort:
    def test_local_cluster_of_two_workers_matches_the_serial_loop(self, cohort_root, serial_rows, tmp_path):
        root, _ = cohort_root
        seen = []
        result = run_cohort(root, tmp_path, workers=2, progress=lambda *a: seen.append(a))
        assert result.ran == 6 and result.resumed == 0
        assert comparable(result.rows) == comparable(serial_rows)
        assert seen[-1][:3] == (6, 1, 6)
        table = read_table(tmp_path / "cohort.csv")
        assert list(table["study"]) == sorted(r["study"] for r in serial_rows)
        assert list(table["status"]) == ["ok"] * 5 + ["failed"]
        parquet = read_table(tmp_path / "cohort.parquet")
        assert parquet["lung_volume_ml"].tolist() == pytest.approx(table["lung_volume_ml"].tolist(), nan_ok=True)
        assert list(table.columns[:5]) == ["study", "status", "reason", "series_uid", "series_choice"]

    def test_real_scheduler_and_worker_processes(self, cohort_root, serial_rows, tmp_path):
        root, _ = cohort_root
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        common = dict(cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", str(port), "--dashboard-address", ":0", "--no-show"], **common)]
        try:
            address = f"tcp://127.0.0.1:{port}"
            for _ in range(2):
                procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                               "--nthreads", "1", "--nworkers", "1", "--memory-limit", "1GB",
                                               "--host", "127.0.0.1", "--no-dashboard"], **common))
            _wait_for_workers(address, 2)
            result = run_cohort(root, tmp_path / "out", scheduler=address)
            assert comparable(result.rows) == comparable(serial_rows)
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def test_workers_run_with_glibc_default_memory_thresholds(self):
        from distributed import Client

        def trim():
            return os.environ.get("MALLOC_TRIM_THRESHOLD_")

        with cohort.local_cluster(1, memory_limit="1GB") as cluster, Client(cluster) as client:
            assert list(client.run(trim).values()) == [None]
        with cohort.process_cluster(1, memory_limit="1GB") as address, Client(address) as client:
            client.wait_for_workers(1, timeout=120)
            assert list(client.run(trim).values()) == [None]

    def test_resume_runs_only_what_is_missing(self, cohort_root, serial_rows, tmp_path):
        root, _ = cohort_root
        import json

        # A killed run: two rows written, the third cut in the middle of its line.
        first = sorted(serial_rows, key=lambda r: r["study"])[:3]
        lines = [json.dumps(r) for r in first]
        (tmp_path / cohort.JOURNAL).write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:40])
        result = run_cohort(root, tmp_path, workers=2)
        assert result.resumed == 2 and result.ran == 4
        assert comparable(result.rows) == comparable(serial_rows)
        again = run_cohort(root, tmp_path, workers=2)
        assert again.ran == 0 and again.resumed == 6
        assert len(read_table(tmp_path / "cohort.parquet")) == 6

    def test_command_line(self, cohort_root, tmp_path):
        root, _ = cohort_root
        done = subprocess.run([sys.executable, "-m", "core.cohort", str(root), "--out", str(tmp_path), "--workers", "2",
                               "--arrays", "npz"], cwd=str(ROOT), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "6/6 studies, 1 failed" in done.stderr
        assert "6 studies (5 ok, 1 failed; 0 from an earlier run)" in done.stdout
        assert sorted(p.name for p in (tmp_path / "arrays").iterdir()) == [
            "a_plain.npz", "b_emphysema.npz", "c_thick.npz", "d_tilted.npz", "e_zipped.zip.npz"]

    def test_command_line_refuses_a_missing_root(self, tmp_path):
        done = subprocess.run([sys.executable, "-m", "core.cohort", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
                              cwd=str(ROOT), capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "is not a folder" in done.stderr


def _wait_for_workers(address: str, n: int, timeout: float = 120.0) -> None:
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(n, timeout=timeout)


# -- the Cohort page (AppTest) ----------------------------------------------------------------

PAGE = ROOT / "pages" / "7_Cohort.py"


@pytest.fixture
def cohort_env(monkeypatch):
    """No outside settings leak in; a test sets what it needs with the returned function."""
    from dashboard import hosting

    for name in hosting.SETTINGS:
        monkeypatch.delenv(f"HOUNSFIELD_{name.upper()}", raising=False)
    return lambda **env: [monkeypatch.setenv(f"HOUNSFIELD_{k.upper()}", v) for k, v in env.items()]


def zip_of_folder(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f"cohort/{f.relative_to(root).as_posix()}")
    return buf.getvalue()


def cohort_page():
    from tests.helpers import page_test

    at = page_test(PAGE, timeout=240)
    at.run()
    assert not at.exception
    return at


class TestCohortPage:
    def test_running_is_off_by_default(self, cohort_env):
        from tests.helpers import page_text

        at = cohort_page()
        assert "Running cohorts is turned off on this server" in page_text(at)
        assert not [b for b in at.button if b.key == "cohort_run_button"]
        assert not [u for u in at.get("file_uploader") if u.proto.label.startswith("A zip of studies")]

    def test_open_a_finished_run(self, cohort_env, serial_rows, tmp_path):
        from tests.helpers import page_text, table_with

        cohort.write_table(serial_rows, tmp_path)
        at = cohort_page()
        at.file_uploader(key="cohort_table_file").set_value(
            [("cohort.csv", (tmp_path / "cohort.csv").read_bytes(), "text/csv")]).run()
        assert not at.exception
        table = table_with(at, "lung_volume_ml")
        assert list(table["study"]) == sorted(r["study"] for r in serial_rows)
        assert [m.value for m in at.metric] == ["6", "5", "1"]
        assert len(at.get("plotly_chart")) == 2  # the scatter and the histograms' heat map
        assert "No study is more than 3.5 robust standard deviations" in page_text(at)
        # Without the studies themselves, no study can be opened in the explorer.
        assert "run the cohort here." in page_text(at)

    def test_a_file_that_is_not_a_cohort_table(self, cohort_env):
        at = cohort_page()
        at.file_uploader(key="cohort_table_file").set_value([("cohort.csv", b"a,b\n1,2\n", "text/csv")]).run()
        assert not at.exception
        assert at.error[0].value.startswith("'cohort.csv' is not a cohort table: no study or status column")

    def test_run_an_uploaded_zip_then_open_a_study(self, cohort_env, cohort_root, serial_rows):
        from tests.helpers import table_with

        cohort_env(cohort_run="on", cohort_workers="2")
        root, _ = cohort_root
        at = cohort_page()
        at.file_uploader(key="cohort_zip").set_value([("cohort.zip", zip_of_folder(root), "application/zip")]).run()
        at.button(key="cohort_run_button").click().run()
        assert not at.exception
        assert comparable(at.session_state["cohort_rows"]) == comparable(serial_rows)
        assert list(table_with(at, "emphysema_index_pct")["status"]) == ["ok"] * 5 + ["failed"]
        at.selectbox(key="cohort_pick").set_value("b_emphysema").run()
        at.button(key="cohort_open").click().run()
        assert not at.exception
        study = at.session_state["study"]
        assert study.source == "Cohort study b_emphysema" and study.volumes[0].shape == SHAPE

    def test_an_uploaded_cohort_counts_against_the_memory_budget(self, cohort_env, cohort_root):
        from core.memory import MB, MemoryBudget, server_budget, set_server_budget

        cohort_env(cohort_run="on", cohort_workers="2")
        root, _ = cohort_root
        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=1 * MB, session_bytes=1 * MB))
        try:
            at = cohort_page()
            at.file_uploader(key="cohort_zip").set_value([("cohort.zip", zip_of_folder(root), "application/zip")]).run()
            at.button(key="cohort_run_button").click().run()
        finally:
            set_server_budget(before)
        assert not at.exception
        assert at.error and "Upload fewer studies at a time." in at.error[0].value
        assert at.session_state["cohort_rows"] is None

    def test_server_folders_only_when_the_operator_allows(self, cohort_env, cohort_root, serial_rows):
        root, _ = cohort_root
        cohort_env(cohort_run="on", cohort_workers="2")
        at = cohort_page()
        assert not [r for r in at.radio if r.key == "cohort_source"]
        cohort_env(cohort_server_paths="on")
        at = cohort_page()
        at.radio(key="cohort_source").set_value("Folder on this server").run()
        at.text_input(key="cohort_path").set_value(str(root)).run()
        at.button(key="cohort_run_button").click().run()
        assert not at.exception
        assert comparable(at.session_state["cohort_rows"]) == comparable(serial_rows)
