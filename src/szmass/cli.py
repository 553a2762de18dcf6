"""The ``szmass`` command: ``szmass predict`` (masses for the clusters of a user's map) and
``szmass info`` (a model's card). ``python -m szmass`` is the same command."""

import argparse
import logging
import sys
from pathlib import Path

#: The CPU model committed with the repository (issue 12), the default of ``--model``.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "results" / "cpu" / "model"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="szmass", description="Galaxy-cluster masses from SZ maps with the mResUNet."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser(
        "predict",
        help="masses for the clusters of a sky map, as a catalogue",
        description=(
            "Masses M200c and M500c [Msun] for every cluster of a catalogue on a sky map, from "
            "the network and the matched filter at the same position. Every input row is "
            "written, in order, with a flag (ok, outside_map, edge, masked, "
            "z_outside_training, mass_outside_training)."
        ),
    )
    predict.add_argument(
        "--map",
        required=True,
        type=Path,
        help="FITS sky map at the model's frequency: a 2-d image with a celestial WCS (any "
        "projection astropy reads), CMB temperature in uK or K (BUNIT); NaN pixels are masked",
    )
    predict.add_argument(
        "--catalogue",
        required=True,
        type=Path,
        help="CSV or FITS table with name, ra, dec [deg] and optionally z (needed on every row "
        "by a model that takes the redshift: `szmass info` says); other columns pass through "
        "to the output",
    )
    predict.add_argument(
        "--out", required=True, type=Path, help="output catalogue: CSV, or a FITS table (.fits)"
    )
    predict.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help=f"model directory with its model_card.json (default: the committed CPU model, "
        f"{DEFAULT_MODEL})",
    )
    predict.add_argument(
        "--weights",
        type=Path,
        help="FITS inverse-variance map of the same shape [1/uK^2]: pixels of weight 0 or NaN "
        "are masked",
    )
    predict.add_argument(
        "--beam-fwhm",
        type=float,
        metavar="ARCMIN",
        help="the map's beam FWHM [arcmin] (default: the BEAMFWHM, FWHM [arcmin] or BMAJ [deg] "
        "keyword); refused if it differs from the model's by more than 5%%",
    )
    predict.add_argument(
        "--unit", help="the map's unit where BUNIT is missing or wrong: uK or K (CMB temperature)"
    )
    predict.add_argument(
        "--resample",
        default="shift",
        choices=("shift", "nearest-neighbor", "bilinear", "bicubic"),
        help="how cutouts are resampled onto the model's grid (default shift: the nearest "
        "pixels, then a Fourier shift of the sub-pixel offset; keeps the map's noise as the "
        "network was trained on it when the pixel sizes match; bilinear or bicubic for maps "
        "of other pixel sizes)",
    )
    predict.add_argument(
        "--threads", type=int, default=1, help="CPU threads for the network (default 1)"
    )
    info = sub.add_parser("info", help="print a model's card")
    info.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL, help="model directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .logs import quiet_tensorflow
    from .survey.catalogue import InputError
    from .survey.predict import describe, predict_catalogue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_tensorflow()
    try:
        if args.command == "info":
            print(describe(args.model))
            return 0
        predict_catalogue(
            map_path=args.map,
            catalogue_path=args.catalogue,
            out_path=args.out,
            model_dir=args.model,
            weights_path=args.weights,
            beam_fwhm_arcmin=args.beam_fwhm,
            unit=args.unit,
            order=args.resample,
            threads=args.threads,
        )
    except InputError as err:
        print(f"szmass {args.command}: {err}", file=sys.stderr)
        return 2
    return 0
