"""Shell completion for recipe and dataset names (`dlcli --install-completion`)."""

from dlcli.training import registry


def recipes(incomplete: str):
    return [name for name in registry.recipe_names() if name.startswith(incomplete)]


def datasets(ctx, incomplete: str):
    """The datasets of the recipe already on the command line, else of every recipe."""
    recipe = ctx.params.get("recipe")
    names = registry.recipe_names()
    chosen = [recipe] if recipe in names else names
    found = dict.fromkeys(d for name in chosen for d in registry.load(name).DATASETS)
    return [d for d in found if d.startswith(incomplete)]
