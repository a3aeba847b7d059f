"""Silence library chatter that says nothing to a DKD user (kept in one place, each with its reason)."""
import logging
import warnings


def quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file "Loading weights" bars; our own log line names the model
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # Lightning vs torch 2.13
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
    # Dev metrics are torchmetrics objects, already reduced across DDP ranks before they are logged.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('dev")
    # Lightning looks for the position in the loader; DKD's DataModule saves it (TaskDataModule.state_dict).
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
