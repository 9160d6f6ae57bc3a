"""Is a checkpoint whole before `--resume` restores it? A data file cut short (a full disk, a
copy interrupted) otherwise fails deep inside TensorFlow's reader ("Read less bytes than
requested"). Chosen behaviour: refuse in one line naming the checkpoint, change nothing, and
say which older checkpoint is intact; no silent fallback, because resuming from an older
checkpoint than the run folder's latest would repeat steps the user may not expect."""

from dlcli.core.errors import DlcliError


def damage(prefix):
    """None if every tensor of checkpoint `prefix` reads back (sizes and checksums), else why not."""
    from dlcli.core.lazy import tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)  # the bundle reader checks each tensor's length and CRC32C
    except Exception as e:  # IndexError, DataLossError, OutOfRangeError... all mean "damaged"
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[0][:120] if lines else ''}"
    return None


def verify(prefix):
    """Raises DlcliError, naming the checkpoint and an intact older one, if `prefix` is damaged.
    String paths throughout: `prefix` may be a gs:// URI, which pathlib would mangle."""
    why = damage(prefix)
    if why is None:
        return
    from dlcli.core.lazy import tf

    folder, name = str(prefix).rsplit("/", 1)
    try:
        state = tf.train.get_checkpoint_state(folder)
        older = [p.rsplit("/", 1)[-1] for p in (state.all_model_checkpoint_paths if state else [])]
    except Exception:  # a damaged state file: no older checkpoint to offer
        older = []
    intact = next((p for p in reversed(older) if p != name and damage(f"{folder}/{p}") is None), None)
    raise DlcliError(
        f"cannot resume: checkpoint {name} in {folder} is damaged ({why}); nothing was changed. "
        + (f'The older {intact} is intact: to resume from it, set model_checkpoint_path: "{intact}" in {folder}/checkpoint; ' if intact else "")
        + "or train again with --overwrite."
    )
