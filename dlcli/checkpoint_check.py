"""Is a checkpoint whole before `--resume` restores it? A data file cut short (a full disk, a
copy interrupted) otherwise fails deep inside TensorFlow's reader ("Read less bytes than
requested"). Chosen behaviour: refuse in one line naming the checkpoint, change nothing, and
say which older checkpoint is intact; no silent fallback, because resuming from an older
checkpoint than the run folder's latest would repeat steps the user may not expect."""

from pathlib import Path

from dlcli.errors import DlcliError


def damage(prefix):
    """None if every tensor of checkpoint `prefix` reads back (sizes and checksums), else why not."""
    from dlcli.lazy import tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)  # the bundle reader checks each tensor's length and CRC32C
    except Exception as e:  # IndexError, DataLossError, OutOfRangeError... all mean "damaged"
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[0][:120] if lines else ''}"
    return None


def verify(prefix):
    """Raises DlcliError, naming the checkpoint and an intact older one, if `prefix` is damaged."""
    why = damage(prefix)
    if why is None:
        return
    from dlcli.lazy import tf

    prefix = Path(prefix)
    state = tf.train.get_checkpoint_state(str(prefix.parent))
    older = [p for p in (state.all_model_checkpoint_paths if state else []) if Path(p).name != prefix.name]
    intact = next((Path(p).name for p in reversed(older) if damage(prefix.parent / Path(p).name) is None), None)
    raise DlcliError(
        f"--resume: checkpoint {prefix.name} in {prefix.parent} is damaged ({why}); nothing was changed. "
        + (f'The older {intact} is intact: to resume from it, set model_checkpoint_path: "{intact}" in {prefix.parent / "checkpoint"}; ' if intact else "")
        + "or train again with --overwrite."
    )
