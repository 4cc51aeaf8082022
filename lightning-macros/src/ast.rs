//! Parsing: reads an annotated impl block into methods with their hook markers.
//!
//! Our method attributes (`#[hook]`, `#[hook(name)]`, `#[not_hook]`) are consumed here,
//! as PyO3's `#[pymethods]` consumes `#[getter]`, so they never reach the compiler.

use syn::{spanned::Spanned, Attribute, Ident, ImplItem, ImplItemFn, ItemImpl};

use crate::errors::Errors;

/// Which annotated impl we are reading.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Module,
    Callback,
}

impl Kind {
    pub fn attr(self) -> &'static str {
        match self {
            Kind::Module => "#[lightning_module]",
            Kind::Callback => "#[callback]",
        }
    }
}

/// How a method was marked.
pub enum Marker {
    /// `#[hook]` (the hook is the method's name) or `#[hook(name)]`.
    Hook { name: Option<Ident> },
    /// `#[not_hook]`: an ordinary method, whatever its name.
    NotHook,
    /// No marker: a hook if its name is one.
    None,
}

pub struct Method {
    pub marker: Marker,
    /// Index of the method in `ImplInput::item.items`.
    pub index: usize,
}

pub struct ImplInput {
    /// The impl block with our attributes removed; emitted as the user wrote it.
    pub item: ItemImpl,
    pub methods: Vec<Method>,
}

impl ImplInput {
    pub fn parse(mut item: ItemImpl, errors: &mut Errors) -> Self {
        let mut methods = Vec::new();
        for (index, it) in item.items.iter_mut().enumerate() {
            if let ImplItem::Fn(f) = it {
                let marker = take_marker(f, errors);
                methods.push(Method { marker, index });
            }
        }
        ImplInput { item, methods }
    }

    pub fn method(&self, m: &Method) -> &ImplItemFn {
        match &self.item.items[m.index] {
            ImplItem::Fn(f) => f,
            _ => unreachable!("Method indices point at functions"),
        }
    }
}

fn is(attr: &Attribute, name: &str) -> bool {
    attr.path().is_ident(name)
}

fn take_marker(f: &mut ImplItemFn, errors: &mut Errors) -> Marker {
    let mut marker = Marker::None;
    let mut seen = false;
    let mut keep = Vec::with_capacity(f.attrs.len());
    for attr in std::mem::take(&mut f.attrs) {
        let this = if is(&attr, "hook") {
            Some(parse_hook_attr(&attr, errors))
        } else if is(&attr, "not_hook") {
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                errors.push(attr.span(), "`#[not_hook]` takes no arguments");
            }
            Some(Marker::NotHook)
        } else {
            keep.push(attr);
            None
        };
        if let Some(m) = this {
            if seen {
                errors.push(f.sig.ident.span(), "a method takes at most one `#[hook]` or `#[not_hook]`");
            } else {
                marker = m;
                seen = true;
            }
        }
    }
    f.attrs = keep;
    marker
}

fn parse_hook_attr(attr: &Attribute, errors: &mut Errors) -> Marker {
    match &attr.meta {
        syn::Meta::Path(_) => Marker::Hook { name: None },
        syn::Meta::List(list) => match list.parse_args::<Ident>() {
            Ok(name) => Marker::Hook { name: Some(name) },
            Err(_) => {
                errors.push(
                    list.tokens.span(),
                    format!("expected a hook name, as in `#[hook({})]`", crate::catalogue::example_hook()),
                );
                Marker::NotHook
            }
        },
        syn::Meta::NameValue(nv) => {
            errors.push(nv.span(), "write `#[hook(name)]`, not `#[hook = ...]`");
            Marker::NotHook
        }
    }
}
