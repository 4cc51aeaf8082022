#!/usr/bin/env python3
"""Writes tests/fixtures/lightning-csv/metrics.csv with Python Lightning's own `CSVLogger`
(lightning 2.6.6): a small classifier for 4 epochs logging `train_loss` per step and epoch,
`val_loss`, `val_acc`, and the learning rate (`LearningRateMonitor`, StepLR). tests/plot.rs
draws it with `lightning::logging::plot_metrics`.

    pip install torch lightning==2.6.6
    python3 scripts/make_lightning_csv.py   # in a scratch directory; copy logs/lightning_logs/version_0/metrics.csv
"""
import torch, lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
torch.manual_seed(0)
X = torch.randn(256, 8); Y = (X[:, 0] + X[:, 1] > 0).long()
ds = torch.utils.data.TensorDataset(X, Y)
class M(L.LightningModule):
    def __init__(self):
        super().__init__(); self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    def training_step(self, b, i):
        loss = torch.nn.functional.cross_entropy(self.net(b[0]), b[1]); self.log("train_loss", loss, on_step=True, on_epoch=True); return loss
    def validation_step(self, b, i):
        out = self.net(b[0]); self.log("val_loss", torch.nn.functional.cross_entropy(out, b[1])); self.log("val_acc", (out.argmax(1) == b[1]).float().mean())
    def configure_optimizers(self):
        o = torch.optim.SGD(self.parameters(), lr=0.5); return [o], [torch.optim.lr_scheduler.StepLR(o, 1, 0.5)]
t = L.Trainer(max_epochs=4, logger=CSVLogger("logs"), log_every_n_steps=2, callbacks=[LearningRateMonitor("step"), ModelCheckpoint(monitor="val_acc", mode="max")], enable_progress_bar=False, enable_model_summary=False)
t.fit(M(), torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True), torch.utils.data.DataLoader(ds, batch_size=64))
