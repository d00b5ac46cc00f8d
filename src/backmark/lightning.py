"""Mark a LightningModule while ``lightning.Trainer`` trains it: :class:`MarkCallback`.

Needs PyTorch Lightning (``pip install 'backmark[lightning]'``). The callback wraps the training
DataLoader (:meth:`MarkCallback.wrap`: every batch gets triggers with their key labels, as
:class:`~backmark.embed.marker.Marker` does for a plain loop), checks when fitting starts that the module
answers the key's class count on the key's input shape and that its optimiser updates it, logs the
trigger accuracy after every training epoch (``trigger_acc``, in ``trainer.callback_metrics`` and in the
logger), and runs the trigger phase as extra epochs: when the last scheduled epoch ends with a trigger
unanswered, it adds an epoch with five times the triggers per batch, at most ``finish_epochs`` times::

    mark = MarkCallback(key=mk)
    trainer = lightning.Trainer(max_epochs=3, callbacks=[mark])
    trainer.fit(module, train_dataloaders=mark.wrap(train_loader))

The wrapped loader is not a ``DataLoader``, so Lightning does not add a ``DistributedSampler`` to it.
On several devices (``strategy="ddp"``) give each process its share with a ``DistributedSampler`` of
your own (``num_replicas=trainer.world_size, rank=trainer.global_rank``); the callback reshuffles it
every epoch, and every process follows rank 0's trigger accuracy, so all add the same extra epochs.
Without a sampler each process trains on the whole loader: correct, but each epoch costs as many passes
as there are processes.
"""

from __future__ import annotations

from typing import Any, Unpack

import lightning.pytorch as pl

from backmark.embed.marker import FINISH_FACTOR, Batches, MarkedLoader, Marker, MarkerOptions
from backmark.errors import BackmarkError
from backmark.keys.model import MarkingKey

FINISH_EPOCHS = 10  # at most this many extra epochs of the trigger phase


class MarkCallback(pl.Callback):
    """Embed ``key`` into the LightningModule a Trainer fits (see the module docstring).

    Args:
        key: the marking key; its triggers are float pixels in [0, 1].
        triggers_per_batch: triggers appended to every batch (default 10% of the loader's batch size,
            at least 2).
        transform: the preprocessing your batches get after ``ToTensor()``, applied to the triggers.
        seed: seeds the trigger order.
        finish_epochs: extra epochs the trigger phase may add after ``max_epochs`` (0: none).
        log_name: the name the trigger accuracy is logged under.
    """

    def __init__(
        self,
        *,
        key: MarkingKey,
        finish_epochs: int = FINISH_EPOCHS,
        log_name: str = "trigger_acc",
        **options: Unpack[MarkerOptions],
    ) -> None:
        if finish_epochs < 0:
            raise BackmarkError(
                f"{{finish_epochs}} must be 0 or more, got {finish_epochs}", params=["finish_epochs"]
            )
        self.marker = Marker(key=key, **options)  # triggers_per_batch, transform, seed: Marker's own
        self.finish_epochs = finish_epochs
        self.log_name = log_name
        self.loader: MarkedLoader | None = None
        self.extra_epochs = 0
        self.history: list[float] = []  # the trigger accuracy after each training epoch

    def wrap(self, data_loader: Batches) -> MarkedLoader:
        """The training loader to give ``trainer.fit`` (or to return from ``train_dataloader()``)."""
        self.loader = self.marker.wrap_loader(data_loader)
        return self.loader

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.loader is None:
            raise BackmarkError(
                "MarkCallback has no training loader: fit with train_dataloaders=mark.wrap(loader)"
            )
        self.marker.check_module(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.optimizers:
            raise BackmarkError("the LightningModule configured no optimizer; the mark is learned through it")
        assert self.loader is not None
        self.marker.check_optimizer(pl_module, trainer.optimizers[0])
        self.marker.attach(pl_module, trainer.optimizers[0], self.loader)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning reshuffles a DistributedSampler only in the DataLoaders it sees; the wrapped one hides it
        sampler = getattr(getattr(self.loader, "loader", None), "sampler", None)
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(trainer.current_epoch)  # type: ignore[union-attr]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        acc = self.marker.trigger_accuracy()
        if trainer.world_size > 1:
            # every process must add the same extra epochs or the others wait for it forever; their
            # accuracies can differ (BatchNorm statistics are each process's own), so rank 0's decides
            acc = float(trainer.strategy.broadcast(acc, src=0))
        self.history.append(acc)
        pl_module.log(self.log_name, acc, prog_bar=True)
        loop: Any = trainer.fit_loop
        last = trainer.current_epoch + 1 >= loop.max_epochs
        if acc < 1.0 and last and self.extra_epochs < self.finish_epochs and not trainer.should_stop:
            assert self.loader is not None
            if self.extra_epochs == 0:
                self.loader.per_batch *= FINISH_FACTOR
            loop.max_epochs += 1
            self.extra_epochs += 1


__all__ = ["FINISH_EPOCHS", "MarkCallback"]
