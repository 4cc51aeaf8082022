"""Lightning 2.6.6's hook order with several loaders, for tests/hook_order.rs.

Records every hook a module and a callback receive, with `dl=N` for the hooks given a
`dataloader_idx`: `fit` with two validation loaders (`limit_val_batches=2`,
`num_sanity_val_steps=1`), `test` and `predict` with two loaders each, and `fit` from the
module's loader hooks with `reload_dataloaders_every_n_epochs=1` over two epochs. Writes
tests/fixtures/lightning-hooks-two-loaders/{fit,test,predict,reload}.txt.

    python3 -m venv /tmp/pl && /tmp/pl/bin/pip install torch lightning==2.6.6
    /tmp/pl/bin/python scripts/make_hook_order_multi.py
"""
import sys, warnings
import torch
from torch.utils.data import DataLoader, TensorDataset
import lightning.pytorch as pl

warnings.filterwarnings("ignore")
LOG = []
EVAL_BATCH = {"on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
              "on_predict_batch_start", "on_predict_batch_end", "on_before_batch_transfer",
              "transfer_batch_to_device", "on_after_batch_transfer"}

def rec(side, name, args, kwargs):
    if name in EVAL_BATCH or name.endswith("_step"):
        idx = kwargs.get("dataloader_idx", None)
        if idx is None and name in ("on_before_batch_transfer", "on_after_batch_transfer") and len(args) > 1:
            idx = args[1]
        if idx is None and name == "transfer_batch_to_device" and len(args) > 2:
            idx = args[2]
        if idx is None and name in ("on_validation_batch_start", "on_test_batch_start", "on_predict_batch_start") and len(args) > 2:
            idx = args[2]
        if idx is None and name in ("on_validation_batch_end", "on_test_batch_end", "on_predict_batch_end") and len(args) > 3:
            idx = args[3]
        if idx is None and name in ("validation_step", "test_step", "predict_step") and len(args) > 2:
            idx = args[2]
        if name.endswith("_step") and name not in ("validation_step", "test_step", "predict_step"):
            idx = None
        LOG.append(f"[{side}] {name}" + (f" dl={idx}" if idx is not None else ""))
    else:
        LOG.append(f"[{side}] {name}")

MODULE_HOOKS = [n for n in dir(pl.LightningModule) if (n.startswith("on_") or n in (
    "setup", "teardown", "configure_callbacks", "prepare_data", "configure_model", "configure_optimizers",
    "training_step", "validation_step", "test_step", "predict_step", "backward", "optimizer_step",
    "optimizer_zero_grad", "lr_scheduler_step", "configure_gradient_clipping", "transfer_batch_to_device",
    "train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader")) and callable(getattr(pl.LightningModule, n))]

class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
    def training_step(self, batch, batch_idx):
        rec("M", "training_step", (batch, batch_idx), {})
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        rec("M", "validation_step", (batch, batch_idx, dataloader_idx), {})
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))
    def test_step(self, batch, batch_idx, dataloader_idx=0):
        rec("M", "test_step", (batch, batch_idx, dataloader_idx), {})
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.layer(x), y))
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        rec("M", "predict_step", (batch, batch_idx, dataloader_idx), {})
        return self.layer(batch[0])
    def configure_optimizers(self):
        rec("M", "configure_optimizers", (), {})
        opt = torch.optim.SGD(self.parameters(), lr=0.01)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)]

def wrap_module(name):
    base = getattr(Model, name)
    def f(self, *a, **k):
        if name not in ("training_step", "validation_step", "test_step", "predict_step", "configure_optimizers"):
            rec("M", name, a, k)
        return base(self, *a, **k)
    return f
for n in MODULE_HOOKS:
    if n in ("on_train_batch_start", "on_train_batch_end") or n.startswith("on_") or n in (
            "setup", "teardown", "configure_callbacks", "prepare_data", "configure_model", "backward",
            "optimizer_step", "optimizer_zero_grad", "lr_scheduler_step", "configure_gradient_clipping",
            "transfer_batch_to_device"):
        if n in ("on_fit_start",) or True:
            setattr(Model, n, wrap_module(n))

class Hooked(pl.Callback):
    pass
for n in dir(pl.Callback):
    if n.startswith("on_") or n in ("setup", "teardown", "state_dict"):
        base = getattr(pl.Callback, n)
        def mk(n, base):
            def f(self, *a, **k):
                # drop (trainer, pl_module) from the args
                rec("C", n, a[2:] if n not in ("state_dict",) else a, k)
                return base(self, *a, **k)
            return f
        setattr(Hooked, n, mk(n, base))

def loader(n, bs=2):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(8, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=bs)

def trainer(**kw):
    return pl.Trainer(callbacks=[Hooked()], enable_progress_bar=False, enable_model_summary=False,
                      logger=False, enable_checkpointing=False, accelerator="cpu", **kw)

def record(which):
    m = Model()
    LOG.clear()
    if which == "fit":
        t = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=1)
        LOG.clear()
        t.fit(m, train_dataloaders=loader(0), val_dataloaders=[loader(1), loader(2)])
    elif which == "test":
        t = trainer(limit_test_batches=2)
        LOG.clear()
        t.test(m, dataloaders=[loader(1), loader(2)], verbose=False)
    elif which == "reload":
        class Hooks(Model):
            def train_dataloader(self):
                rec("M", "train_dataloader", (), {})
                return loader(0)
            def val_dataloader(self):
                rec("M", "val_dataloader", (), {})
                return loader(1)
        t = trainer(max_epochs=2, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=1,
                    reload_dataloaders_every_n_epochs=1)
        LOG.clear()
        t.fit(Hooks())
    else:
        t = trainer(limit_predict_batches=2)
        LOG.clear()
        t.predict(m, dataloaders=[loader(1), loader(2)])
    return list(LOG)


if __name__ == "__main__":
    import pathlib
    out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/lightning-hooks-two-loaders"
    out.mkdir(parents=True, exist_ok=True)
    for which in ("fit", "test", "predict", "reload"):
        lines = record(which)
        (out / f"{which}.txt").write_text("\n".join(lines) + "\n")
        print(which, len(lines), "records")
