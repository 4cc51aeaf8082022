//! More callbacks than one tuple of 12 held before: a flat tuple of 16, and tuples nested
//! in tuples (no limit), each hook calling them in order; monitoring callbacks inside a
//! nested tuple still run after the module's `on_train_epoch_end`, and nested callbacks'
//! state keys are collected.

mod common;

use common::{Log, Recorder};
use lightning::prelude::*;
use lightning::serde_json::{json, Value};
use lightning::{CallbackList, CallbackTuple};

/// Records `C{id} hook` for the hooks the test follows.
struct Tagged {
    id: usize,
    log: Log,
}

#[callback]
impl Tagged {
    #[not_hook]
    fn rec(&self, hook: &str) {
        self.log.borrow_mut().push(format!("C{} {hook}", self.id));
    }
    fn on_fit_start(&mut self) {
        self.rec("on_fit_start");
    }
    fn on_train_epoch_end(&mut self) {
        self.rec("on_train_epoch_end");
    }
}

/// A stateful callback, saved under its key.
struct Saved;

#[callback(state_key = "Saved")]
impl Saved {
    fn state_dict(&mut self) -> Value {
        json!(1)
    }
}

/// A monitoring callback (as checkpoints and early stopping are): it runs after the module.
struct Watch {
    id: usize,
    log: Log,
}

#[callback(monitoring, state_key = "Watch")]
impl Watch {
    fn on_fit_start(&mut self) {
        self.log.borrow_mut().push(format!("C{} on_fit_start", self.id));
    }
    fn on_train_epoch_end(&mut self) {
        self.log.borrow_mut().push(format!("C{} on_train_epoch_end", self.id));
    }
}

/// Another stateful callback.
struct Kept;

#[callback(state_key = "Kept")]
impl Kept {
    fn state_dict(&mut self) -> Value {
        json!(2)
    }
}

fn t(id: usize, log: &Log) -> Tagged {
    Tagged { id, log: log.clone() }
}

/// Fits one epoch with `callbacks` and returns the `C…` lines and the module's
/// `on_train_epoch_end`, in call order.
fn fit<C: CallbackTuple>(log: &Log, callbacks: C) -> Vec<String>
where
    C::List: CallbackList<Recorder>,
{
    let mut trainer = Trainer::builder()
        .max_epochs(1)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .callbacks(callbacks)
        .build()
        .unwrap();
    let mut module = Recorder::new(log);
    module.n_batches = 1;
    trainer.fit(&mut module, Data::loader(common::data(1))).unwrap();
    let lines = log.borrow().clone();
    lines.into_iter().filter(|l| l.starts_with('C') || l == "[M] on_train_epoch_end").collect()
}

fn expect(ids: &[usize], monitoring: &[usize]) -> Vec<String> {
    let mut want: Vec<String> = ids.iter().map(|i| format!("C{i} on_fit_start")).collect();
    want.extend(ids.iter().filter(|i| !monitoring.contains(i)).map(|i| format!("C{i} on_train_epoch_end")));
    want.push("[M] on_train_epoch_end".into());
    want.extend(ids.iter().filter(|i| monitoring.contains(i)).map(|i| format!("C{i} on_train_epoch_end")));
    want
}

#[test]
fn a_fit_with_sixteen_callbacks_calls_them_in_order() {
    let log = Log::default();
    let l = &log;
    let cbs = (
        t(0, l),
        t(1, l),
        t(2, l),
        t(3, l),
        t(4, l),
        t(5, l),
        t(6, l),
        t(7, l),
        t(8, l),
        t(9, l),
        t(10, l),
        t(11, l),
        t(12, l),
        t(13, l),
        t(14, l),
        t(15, l),
    );
    assert_eq!(fit(&log, cbs), expect(&(0..16).collect::<Vec<_>>(), &[]));
}

#[test]
fn nested_tuples_are_one_list_in_order_with_monitoring_after_the_module() {
    let log = Log::default();
    let l = &log;
    let w = |id: usize| Watch { id, log: log.clone() };
    // 12 + (4 with a deeper tuple inside) + 1: 17 callbacks, two of them monitoring
    let cbs = (
        (t(0, l), t(1, l), t(2, l), w(3), t(4, l), t(5, l), t(6, l), t(7, l), t(8, l), t(9, l), t(10, l), t(11, l)),
        (t(12, l), (w(13), t(14, l)), t(15, l)),
        t(16, l),
        (Saved, Kept),
    );
    assert_eq!(fit(&log, cbs), expect(&(0..17).collect::<Vec<_>>(), &[3, 13]));
}

fn keys<L: CallbackList<Recorder>>(_: &L) -> Vec<&'static str> {
    let mut out = Vec::new();
    L::state_keys(&mut out);
    out
}

#[test]
fn nested_callbacks_keep_their_state_keys_and_are_reachable() {
    let log = Log::default();
    let l = &log;
    let list = ((Saved, Watch { id: 1, log: log.clone() }), (t(2, l), (Kept,))).into_list();
    assert_eq!(keys(&list), ["Saved", "Kept"], "the nested callbacks' keys, in order; Tagged and Watch have no state");
    assert_eq!(list.0 .0 .1.id, 1);
    assert_eq!(list.1 .0 .0.id, 2);
}
