"""ECG formats: WFDB records (PTB-XL / MIMIC-IV-ECG style) and DICOM 12-lead waveforms, plus PTB-XL-style tables.

:func:`read_ecg` returns ``(signal, fs, lead_names)``: float32 ``(leads, samples)`` in millivolts,
the sampling rate in Hz and the lead names as the file spells them, canonicalised to
``I, II, III, aVR, aVL, aVF, V1..V6`` spelling (PTB-XL writes ``AVR``; DICOM writes ``Lead aVR``).
The leads keep the file's order; :func:`stages.ecg_text.signal.to_canonical_order` reorders them by
name, so MIMIC-IV-ECG's order (aVF before aVL, which MERL's downstream loaders undo by swapping
rows 4 and 5) needs no index swap here.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from stages.common.io import FormatError, read_table

CANONICAL_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_BY_UPPER = {name.upper(): name for name in CANONICAL_LEADS}
# PTB-XL's ptbxl_database.csv columns (dataset card / example_physionet.py) that ingest reads.
PTBXL_COLUMNS: tuple[str, ...] = ("ecg_id", "patient_id", "report", "scp_codes", "strat_fold", "filename_hr")
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


def canonical_lead_name(name: str, record: str | Path) -> str:
    """``'Lead aVR'``, ``'AVR'``, ``'avr'`` -> ``'aVR'``; ``'Lead I (Einthoven)'`` -> ``'I'``; unknown names fail."""
    text = re.sub(r"\(.*?\)", "", str(name)).strip()
    text = re.sub(r"^lead\s+", "", text, flags=re.IGNORECASE).strip().upper()
    if text not in _BY_UPPER:
        raise FormatError(record, f"unknown lead name {name!r}; expected one of {', '.join(CANONICAL_LEADS)}")
    return _BY_UPPER[text]


def _to_millivolts(values: np.ndarray, unit: str, record: str | Path, lead: str) -> np.ndarray:
    factor = _UNIT_TO_MV.get(unit.strip().lower())
    if factor is None:
        raise FormatError(record, f"lead {lead}: unsupported unit {unit!r} (mV, uV or V)")
    return values * factor


def _format16_size_problem(record, header: Path) -> str | None:
    """For single-file format-16 records: the .dat size against the header's signal count and length."""
    if not record.file_name or len(set(record.file_name)) != 1 or any(f != "16" for f in record.fmt):
        return None
    data_file = header.parent / record.file_name[0]
    if not data_file.is_file():
        return f"signal file {record.file_name[0]} not found"
    expected, size = record.sig_len * record.n_sig * 2, data_file.stat().st_size
    if size == expected:
        return None
    kind = "truncated" if size < expected else "longer than declared"
    return (f"{data_file.name} {kind}: {size} bytes, but the header declares {record.n_sig} signals x "
            f"{record.sig_len} samples of format 16 ({expected} bytes)")


def read_wfdb(header_path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    """A WFDB record from its ``.hea`` (signal files beside it), via ``wfdb.rdheader`` and ``wfdb.rdrecord``."""
    import wfdb

    header = Path(header_path)
    if not header.is_file():
        raise FormatError(header, "WFDB header not found")
    try:
        declared = wfdb.rdheader(str(header.with_suffix("")))
    except Exception as error:
        raise FormatError(header, f"unreadable WFDB header ({error})") from error
    problem = _format16_size_problem(declared, header)
    if problem:
        raise FormatError(header, problem)
    try:
        record = wfdb.rdrecord(str(header.with_suffix("")), physical=True)
    except Exception as error:
        raise FormatError(header, f"unreadable WFDB record ({error})") from error
    signal = np.asarray(record.p_signal, dtype=np.float64).T
    if signal.shape != (record.n_sig, record.sig_len):
        raise FormatError(header, f"header declares {record.n_sig} signals x {record.sig_len} samples, data has {signal.shape}")
    leads = [canonical_lead_name(name, header) for name in record.sig_name]
    units = record.units or ["mV"] * record.n_sig
    converted = np.stack([_to_millivolts(row, unit, header, lead) for row, unit, lead in zip(signal, units, leads)])
    return converted.astype(np.float32), float(record.fs), leads


def _dicom_channel_unit(channel) -> str:
    units = channel.get("ChannelSensitivityUnitsSequence")
    return str(units[0].CodeValue) if units else "uV"


def read_dicom_ecg(path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    """The first waveform group of a DICOM ECG (``waveform_array`` applies sensitivity and baseline)."""
    import pydicom

    file = Path(path)
    try:
        dataset = pydicom.dcmread(file)
    except Exception as error:
        raise FormatError(file, f"not a readable DICOM file ({error})") from error
    if "WaveformSequence" not in dataset or len(dataset.WaveformSequence) == 0:
        raise FormatError(file, "DICOM file has no waveform data (WaveformSequence missing)")
    group = dataset.WaveformSequence[0]
    try:
        values = np.asarray(dataset.waveform_array(0), dtype=np.float64).T
    except Exception as error:
        raise FormatError(file, f"waveform data unreadable ({error})") from error
    channels = list(group.ChannelDefinitionSequence)
    if len(channels) != values.shape[0]:
        raise FormatError(file, f"{len(channels)} channel definitions but {values.shape[0]} channels of data")
    leads = [canonical_lead_name(ch.ChannelSourceSequence[0].CodeMeaning, file) for ch in channels]
    converted = np.stack([_to_millivolts(row, _dicom_channel_unit(ch), file, lead)
                          for row, ch, lead in zip(values, channels, leads)])
    return converted.astype(np.float32), float(group.SamplingFrequency), leads


def dicom_report_text(path: str | Path) -> str:
    """The free-text statements of a DICOM ECG's waveform annotations, joined (e.g. 'RITMO SINUSALE. ECG NORMALE')."""
    import pydicom

    dataset = pydicom.dcmread(Path(path), stop_before_pixels=False)
    statements = [str(item.UnformattedTextValue).strip() for item in dataset.get("WaveformAnnotationSequence", [])
                  if "UnformattedTextValue" in item and str(item.UnformattedTextValue).strip()]
    if not statements:
        raise FormatError(path, "DICOM ECG has no text annotations to use as its report")
    return ". ".join(statements)


def read_ecg(path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    """``(signal float32 (leads, samples) in mV, fs, lead names)`` from a ``.hea`` or ``.dcm`` path."""
    file = Path(path)
    if file.suffix == ".hea":
        signal, fs, leads = read_wfdb(file)
    elif file.suffix == ".dcm":
        signal, fs, leads = read_dicom_ecg(file)
    else:
        raise FormatError(file, "unknown ECG format (expected a WFDB .hea or a DICOM .dcm)")
    if len(set(leads)) != len(leads):
        raise FormatError(file, f"repeated lead names {leads}")
    return signal, fs, leads


def write_wfdb(folder: Path, name: str, signal_mv: np.ndarray, fs: float, leads: list[str]) -> Path:
    """Write a PTB-XL-style record: one format-16 ``.dat`` (gain 1000/mV, so 1 uV steps) and its ``.hea``.

    Written directly from the WFDB header and format-16 specification (``wfdb.wrsamp`` takes about
    a quarter of a second per 12 x 5000 record here); tests check it against ``wfdb.wrsamp`` and
    ``wfdb.rdrecord``. Lead names are upper-cased as PTB-XL writes them (``AVR``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(np.asarray(signal_mv, dtype=np.float64) * 1000.0), -32767, 32767).astype("<i2")
    n_sig, n_samples = digital.shape
    (folder / f"{name}.dat").write_bytes(digital.T.tobytes())
    checksums = digital.astype(np.int64).sum(axis=1) % 65536
    lines = [f"{name} {n_sig} {fs:g} {n_samples}"]
    lines += [f"{name}.dat 16 1000.0(0)/mV 16 0 {digital[i, 0]} {checksums[i]} 0 {lead.upper()}"
              for i, lead in enumerate(leads)]
    header = folder / f"{name}.hea"
    header.write_text("\n".join(lines) + "\n")
    return header


def parse_scp_codes(text: str, table: str | Path, row: object) -> dict[str, float]:
    """PTB-XL's ``scp_codes`` column: a Python dict literal of code -> likelihood (the loader uses ast.literal_eval)."""
    try:
        codes = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as error:
        raise FormatError(table, f"row ecg_id={row}: scp_codes {text!r} is not a dict literal") from error
    if not isinstance(codes, dict):
        raise FormatError(table, f"row ecg_id={row}: scp_codes {text!r} is not a dict")
    return {str(k): float(v) for k, v in codes.items()}


def read_ptbxl_table(path: str | Path):
    """A PTB-XL-style database CSV indexed as the official loader does; the columns ingest needs must exist."""
    return read_table(path, required_columns=PTBXL_COLUMNS, keep_default_na=False)


def ptbxl_split(strat_fold: int) -> str:
    """PTB-XL's recommended split: folds 1-8 train, 9 validation, 10 test."""
    return "test" if strat_fold == 10 else "val" if strat_fold == 9 else "train"
