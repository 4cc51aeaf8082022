//! Several evaluation loaders at once (Lightning's `val_dataloaders=[a, b]`,
//! `trainer.test(dataloaders=[a, b])`): one [`Loader`], a `Vec` or an array of one loader
//! type, or a tuple of loaders of different types with one batch type. The loops visit them
//! in order through [`EachLoader`], statically: no boxing, no `dyn`.

use crate::{Loader, Result};

/// One or several loaders, each read in turn with its `dataloader_idx`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use lightning::{DataLoader, EachLoader, Loader, Loaders};
///
/// # fn main() -> lightning::Result<()> {
/// let x = Tensor::zeros((6, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let y = Tensor::zeros((6, 1), candle_core::DType::F32, &Device::Cpu)?;
/// let mut two = (DataLoader::new(x.clone(), y.clone(), 2)?, DataLoader::new(x, y, 6)?);
/// assert_eq!(two.count(), 2);
/// assert_eq!((two.len_of(0), two.len_of(1)), (3, 1));
///
/// // a visitor sees each loader with its index
/// struct Lens(Vec<(usize, usize)>);
/// impl EachLoader<(Tensor, Tensor)> for Lens {
///     fn loader<L: Loader<Batch = (Tensor, Tensor)>>(&mut self, idx: usize, l: &mut L) -> lightning::Result<()> {
///         self.0.push((idx, l.len()));
///         Ok(())
///     }
/// }
/// let mut lens = Lens(Vec::new());
/// two.each(&mut lens)?;
/// assert_eq!(lens.0, [(0, 3), (1, 1)]);
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not one or several data loaders",
    label = "not a `Loader`, a `Vec` or array of loaders, or a tuple of loaders",
    note = "give one loader, `vec![a, b]`, `[a, b]`, or a tuple `(a, b)` of loaders with the same batch type"
)]
pub trait Loaders {
    /// What one batch is, the same for every loader.
    type Batch;
    /// How many loaders.
    fn count(&self) -> usize;
    /// Batches per epoch of loader `idx` (`0` past the last).
    fn len_of(&self, idx: usize) -> usize;
    /// Data-parallel runs: every loader yields only rank `rank`'s share ([`Loader::shard`]).
    fn shard_all(&mut self, rank: usize, world: usize) -> Result<()>;
    /// Calls `visit` with each loader and its index, in order; stops at the first error.
    fn each<V: EachLoader<Self::Batch>>(&mut self, visit: &mut V) -> Result<()>;
}

/// What [`Loaders::each`] calls with every loader.
pub trait EachLoader<B> {
    /// Loader number `idx` (its `dataloader_idx`).
    fn loader<L: Loader<Batch = B>>(&mut self, idx: usize, loader: &mut L) -> Result<()>;
}

impl<L: Loader> Loaders for L {
    type Batch = L::Batch;
    fn count(&self) -> usize {
        1
    }
    fn len_of(&self, idx: usize) -> usize {
        if idx == 0 {
            self.len()
        } else {
            0
        }
    }
    fn shard_all(&mut self, rank: usize, world: usize) -> Result<()> {
        self.shard(rank, world)
    }
    fn each<V: EachLoader<L::Batch>>(&mut self, visit: &mut V) -> Result<()> {
        visit.loader(0, self)
    }
}

/// A slice of one loader type: `Vec<L>` and `[L; N]`.
macro_rules! same_type {
    ($($ty:ty => [$($gen:tt)*]),*) => {$(
        impl<L: Loader, $($gen)*> Loaders for $ty {
            type Batch = L::Batch;
            fn count(&self) -> usize {
                self.len()
            }
            fn len_of(&self, idx: usize) -> usize {
                self.get(idx).map_or(0, Loader::len)
            }
            fn shard_all(&mut self, rank: usize, world: usize) -> Result<()> {
                self.iter_mut().try_for_each(|l| l.shard(rank, world))
            }
            fn each<V: EachLoader<L::Batch>>(&mut self, visit: &mut V) -> Result<()> {
                self.iter_mut().enumerate().try_for_each(|(i, l)| visit.loader(i, l))
            }
        }
    )*};
}
same_type!(Vec<L> => [], [L; N] => [const N: usize]);

/// Tuples of loaders of different types, with one batch type.
macro_rules! tuple {
    ($n:literal: $($t:ident $i:tt),+) => {
        impl<Bt, $($t: Loader<Batch = Bt>),+> Loaders for ($($t,)+) {
            type Batch = Bt;
            fn count(&self) -> usize {
                $n
            }
            fn len_of(&self, idx: usize) -> usize {
                match idx {
                    $($i => self.$i.len(),)+
                    _ => 0,
                }
            }
            fn shard_all(&mut self, rank: usize, world: usize) -> Result<()> {
                $(self.$i.shard(rank, world)?;)+
                Ok(())
            }
            fn each<V: EachLoader<Bt>>(&mut self, visit: &mut V) -> Result<()> {
                $(visit.loader($i, &mut self.$i)?;)+
                Ok(())
            }
        }
    };
}
tuple!(2: A 0, B 1);
tuple!(3: A 0, B 1, C 2);
tuple!(4: A 0, B 1, C 2, D 3);
tuple!(5: A 0, B 1, C 2, D 3, E 4);
tuple!(6: A 0, B 1, C 2, D 3, E 4, F 5);
tuple!(7: A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple!(8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// The batches to read from each loader: `limit` applied to each loader's length (Lightning
/// applies `limit_*_batches` per loader), capped at `cap` (the sanity check's
/// `num_sanity_val_steps`, also per loader).
pub(crate) fn counts<D: Loaders>(
    loaders: &D,
    limit: crate::trainer::Limit,
    flag: &'static str,
    cap: usize,
) -> Result<Vec<usize>> {
    (0..loaders.count()).map(|i| Ok(limit.apply(loaders.len_of(i), flag)?.min(cap))).collect()
}
