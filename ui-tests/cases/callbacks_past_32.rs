use lightning::prelude::*;

struct Tick;

#[callback]
impl Tick {
    fn on_train_epoch_end(&mut self) {}
}

fn main() -> lightning::Result<()> {
    // 33 callbacks in one tuple: one past the limit; nesting them would work
    let _trainer = Trainer::builder()
        .callbacks((Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick, Tick))
        .build()?;
    Ok(())
}
