"""What a finished run makes from its saved model: the recipe's report (baselines, its own
pictures), a confusion matrix and sample predictions for classifiers, and the training curves.

Kept apart from the loop: these read the saved `model.keras` (a copy outside the strategy:
under multi-worker the trained model's predict would wait on workers that have already
finished), and only the chief makes them.
"""

from pathlib import Path

from dlcli.models import plots, safe_model
from dlcli.runs import rundir


def write(recipe, config, splits, run_dir, final):
    """Adds the report and pictures to `final` and rewrites metrics.json; returns `final`."""
    run_dir = Path(run_dir)
    local = safe_model.load_keras(run_dir / "model.keras")
    report = recipe.after_training(config, splits, local, run_dir) if hasattr(recipe, "after_training") else None
    if report is not None:
        final["report"] = report
    pictures = plots.classifier_pictures(local, splits, run_dir) if splits.num_classes else []
    final["pictures"] = sorted(
        {p.name for p in [*pictures, *plots.redraw(run_dir)]} | set((report or {}).get("pictures", []))
    )
    rundir.write_json(run_dir / "metrics.json", final)
    return final
