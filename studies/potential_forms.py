"""How well an embedded-atom form can be fitted to the reference potential, per form.

The ``symplectic`` model's potential (and every checkpoint's energy head) is a linear combination
of fixed features: Bessel pair functions within a cutoff, and embedding polynomials of exponential
densities (:class:`equignnmd.potential.eam.EnergyHead`). Its least-squares fit to the recorded
energies and forces (:func:`equignnmd.potential.fit.fit_energy_head`) is where a trained
``symplectic`` model starts, and its force error is a floor under the phonon frequencies a rollout
can get right (issue 12: VDOS overlap). This prints, for each form
``CUTOFF/NUM_RADIAL/DECAY,DECAY,.../EMBEDDING_ORDER``, the number of coefficients and the force
RMSE relative to the reference's RMS force on the validation frames of every training temperature
and on the held-out ones::

    python studies/potential_forms.py data/ref5 5.5/12/4,8/4 6.5/12/4,8/4 6.5/40/4,8/4

(one fit each: 20 frames per training temperature; 7 s for 21 coefficients, 43 s for 49 on one
thread: the force design in closed form, ``EnergyHead.force_features``).
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from equignnmd.potential import fit_energy_head


def parse_form(text: str) -> dict:
    """``"6.5/40/4,8/4"`` → the energy head's fields (cutoff Å, radial count, decays, order)."""
    try:
        cutoff, radial, decays, order = text.split("/")
        return {
            "cutoff": float(cutoff),
            "num_radial": int(radial),
            "density_decays": [float(x) for x in decays.split(",")],
            "embedding_order": int(order),
        }
    except ValueError as err:
        raise SystemExit(
            f"form {text!r}: expected CUTOFF/NUM_RADIAL/DECAY[,DECAY...]/ORDER, e.g. 6.5/40/4,8/4"
        ) from err


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="dataset folder with energies and forces")
    p.add_argument("forms", nargs="+", help="CUTOFF/NUM_RADIAL/DECAYS/ORDER, e.g. 6.5/40/4,8/4")
    p.add_argument("--frames", type=int, default=20, help="fit frames per training temperature")
    args = p.parse_args(argv)
    forms = [parse_form(f) for f in args.forms]  # every form checked before any fit
    header = None
    for text, form in zip(args.forms, forms):
        # the fit reads only the model's cutoff and species
        model = SimpleNamespace(cutoff=form["cutoff"], stats=SimpleNamespace(species=[]))
        settings = {k: v for k, v in form.items() if k != "cutoff"}
        settings["frames_per_temperature"] = args.frames
        head, report = fit_energy_head(model, args.data, settings, log=None)
        scores = report["scores"]
        if header is None:
            header = list(scores)
            print("| form | coefficients | " + " | ".join(header) + " | fit s |")
            print("|---" * (len(header) + 3) + "|")
        rel = [
            f"{100 * scores[k]['force_eV_per_A'] / scores[k]['force_rms_eV_per_A']:.1f} %"
            for k in header
        ]
        print(f"| {text} | {head.n_features} | " + " | ".join(rel) + f" | {report['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
