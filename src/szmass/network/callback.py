"""The training loop's bookkeeping, as a Keras callback (SPEC §3; Gupta & Reichardt 2020,
arXiv:2003.06135, §3): the learning-rate warm-up and plateau cuts (or a cosine decay), early
stopping (after ``stop_patience`` epochs without a better score, or when a cut would take the
learning rate below ``min_learning_rate``), the best weights (of the weights' moving average
when the optimizer keeps one), and a checkpoint after every epoch that a killed job resumes
from.
"""

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("szmass.train")

#: Seconds between progress lines within an epoch.
PROGRESS_EVERY_S = 30.0
#: Steady-state steps timed at the start before the whole run's time is estimated.
ESTIMATE_AFTER_STEPS = 20
#: An estimated training time above this (hours) is warned about at the start.
WARN_ABOVE_HOURS = 3.0


def rng_state_variables(net) -> list:
    """The dropout layers' random-generator states, in model order (Keras saves weights, not
    these, in a .keras file; without them a resumed run would replay epoch 1's masks)."""
    return [v for v in net.variables if v.path.endswith("seed_generator_state")]


def cosine_rate(epoch: int, *, base: float, floor: float, warmup: int, max_epochs: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) after the warm-up: half a cosine from
    ``base`` at the first epoch after the warm-up to ``floor`` after the last epoch."""
    t = (epoch - warmup) / max(1, max_epochs - warmup)
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def swap_ema_weights(optimizer) -> None:
    """Exchange the model's trainable weights with the optimizer's moving averages of them
    (Keras keeps these when ``use_ema``; swapping twice restores both)."""
    import keras

    # Private attributes: Keras 3's own SwapEMAWeights callback swaps these same two lists.
    for var, average in zip(
        optimizer._trainable_variables, optimizer._model_variables_moving_average, strict=True
    ):
        value = keras.ops.convert_to_numpy(var)
        var.assign(average)
        average.assign(value)


def make_callback(
    *,
    ckpt_dir: Path,
    state: dict[str, Any],
    training: dict[str, Any],
    n_train: int,
    validate,
    draw_seconds: dict[int, float],
):
    import keras

    max_epochs, warmup = training["max_epochs"], training["warmup_epochs"]
    steps = -(-n_train // training["batch_size"])

    def estimate_run_time(step_s: float, *, epochs_left: int) -> None:
        """Log the time the remaining epochs take at most, from the steady steps timed so far
        (validation not counted), and warn when it is more than ``WARN_ABOVE_HOURS``."""
        hours = step_s * steps * epochs_left / 3600
        log.info(
            "timed %d steps: %.0f images/s; the %d epochs left take at most %.1f h "
            "(without validation)",
            ESTIMATE_AFTER_STEPS,
            training["batch_size"] / step_s,
            epochs_left,
            hours,
        )
        if hours > WARN_ABOVE_HOURS:
            log.warning(
                "training may take up to %.0f h on this machine (%.1f h per epoch of %d maps); "
                "on a CPU, config/cpu.yaml trains a narrower network in about an hour "
                "(snakemake --cores all --configfile config/cpu.yaml)",
                hours,
                hours / epochs_left,
                n_train,
            )

    base_lr, select_by = training["learning_rate"], training["select_by"]
    cosine = training.get("schedule", "plateau") == "cosine"

    class ResumableTraining(keras.callbacks.Callback):
        """Warm-up, plateau LR cuts, early stopping, best weights, a checkpoint every epoch."""

        estimated = False

        def on_epoch_begin(self, epoch, logs=None):
            if epoch < warmup:
                self.model.optimizer.learning_rate.assign(base_lr * (epoch + 1) / warmup)
            elif cosine:
                self.model.optimizer.learning_rate.assign(
                    cosine_rate(
                        epoch,
                        base=base_lr,
                        floor=training["min_learning_rate"],
                        warmup=warmup,
                        max_epochs=max_epochs,
                    )
                )
            self.epoch = epoch
            self.t0, self.t1 = time.perf_counter(), None
            self.last_line = self.t0

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if batch == 1:  # steady-state rate from here: the first steps include tracing
                self.t1 = now
            if self.t1 is None or batch <= 1:
                return
            step_s = (now - self.t1) / (batch - 1)
            if not self.estimated and batch - 1 >= ESTIMATE_AFTER_STEPS:
                self.estimated = True
                estimate_run_time(step_s, epochs_left=max_epochs - self.epoch)
            if now - self.last_line >= PROGRESS_EVERY_S:
                self.last_line = now
                log.info(
                    "epoch %d: step %d/%d, %.0f images/s, epoch ETA %.0f s",
                    self.epoch + 1,
                    batch + 1,
                    steps,
                    training["batch_size"] / step_s,
                    (steps - batch - 1) * step_s,
                )

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if not math.isfinite(logs.get("loss", 0.0)):
                # diverged: stop before this epoch's weights are checkpointed or scored (the
                # state on disk still names the last finite epoch's files)
                raise FloatingPointError(
                    f"training loss is {logs['loss']} at epoch {epoch + 1}: the run diverged; "
                    "lower training.learning_rate or training.readout_weight and retrain"
                )
            seconds = time.perf_counter() - self.t0
            steady = seconds  # epochs of <= 2 steps: no steady state to time
            if self.t1 is not None and steps > 2:
                steady = (time.perf_counter() - self.t1) / (steps - 2) * steps
            # With a moving average of the weights, validation and the best weights are the
            # average's; training goes on from the raw weights (swapped back below).
            ema = getattr(self.model.optimizer, "use_ema", False)
            if ema:
                swap_ema_weights(self.model.optimizer)
            val = validate(self.model)
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            state["history"].append(
                {
                    "epoch": epoch + 1,
                    "loss": float(logs["loss"]),
                    **val,
                    "learning_rate": lr,
                    "seconds": seconds,
                    "images_per_s": n_train / steady,
                }
            )
            score = (
                val["val_width"] + abs(val["val_mean_ln"])
                if select_by == "val_width_bias"
                else val[select_by]
            )
            if score < state["best_score"]:
                state.update(
                    best_score=score,
                    best_val_loss=val["val_loss"],
                    best_epoch=epoch + 1,
                    wait_lr=0,
                    wait_stop=0,
                )
                state["best_file"] = f"best-{epoch + 1:04d}.weights.h5"
                self.model.save_weights(ckpt_dir / state["best_file"])
            elif epoch + 1 > warmup:
                state["wait_lr"] += 1
                state["wait_stop"] += 1
                if not cosine and state["wait_lr"] >= training["lr_patience"]:
                    new_lr = lr * training["lr_factor"]
                    state["wait_lr"] = 0
                    if new_lr < training["min_learning_rate"]:
                        log.info(
                            "no better %s for %d epochs at the learning-rate floor %.3g: stopping",
                            select_by,
                            training["lr_patience"],
                            training["min_learning_rate"],
                        )
                        state["wait_stop"] = training["stop_patience"]
                    else:
                        self.model.optimizer.learning_rate.assign(new_lr)
                        log.info(
                            "no better %s for %d epochs: learning rate -> %.3g",
                            select_by,
                            training["lr_patience"],
                            new_lr,
                        )
                if state["wait_stop"] >= training["stop_patience"]:
                    state["stopped_early"] = True
                    self.model.stop_training = True
            if ema:
                swap_ema_weights(self.model.optimizer)
            state["epochs_done"] = epoch + 1
            draw = draw_seconds.pop(epoch, None)
            log.info(
                "epoch %d/%d: loss %.4g, val_loss %.4g, val mean ln %+.3f, width %.3f "
                "(best %s %.4g @ %d), lr %.3g, %.0f images/s%s, ETA <= %.0f s",
                epoch + 1,
                max_epochs,
                logs["loss"],
                val["val_loss"],
                val["val_mean_ln"],
                val["val_width"],
                select_by,
                state["best_score"],
                state["best_epoch"],
                lr,
                n_train / steady,
                "" if draw is None else f" (fresh skies drawn in {draw:.1f} s, in a thread)",
                seconds * (max_epochs - epoch - 1),
            )
            # Checkpoint: epoch-numbered model (+ optimizer) and best weights, then the state
            # that names them, replaced in one rename; files it does not name are dropped. A
            # kill at any point leaves a state and the files it names.
            state["last_file"] = f"last-{epoch + 1:04d}.keras"
            self.model.save(ckpt_dir / state["last_file"])
            state["rng_states"] = [
                keras.ops.convert_to_numpy(v).tolist() for v in rng_state_variables(self.model)
            ]
            (ckpt_dir / "state.json.tmp").write_text(json.dumps(state, indent=1))
            os.replace(ckpt_dir / "state.json.tmp", ckpt_dir / "state.json")
            for path in ckpt_dir.iterdir():
                if path.name not in ("state.json", state["last_file"], state.get("best_file")):
                    path.unlink()

    return ResumableTraining()
