//! A view lent to Lua for the length of one hook call. The userdata Lua
//! holds (`req`, `res`) is made once per script and points at the view only
//! while a call runs: a call makes no userdata (and no garbage) for it.
//!
//! The one `unsafe` outside the libc boundary, kept for its measured
//! reason: mlua's scope (`Lua::scope`, a userdata per view per call, its
//! metatable cached) is the safe way, and made an empty `route(req)` cost
//! 540-585 ns instead of 160-200, an empty `respond(req, res)` (two views)
//! 750-805 ns instead of 73-78 (`router::tests::
//! lent_handles_against_scoped_userdata`, release build, best of 5 runs of
//! 200,000 calls, on 2 cores shared with other builds). Both states of a
//! handle are restored by guards, so a panic that unwinds through a call
//! (mlua resumes a callback's panic once Lua has returned) leaves no
//! dangling view and no handle stuck busy.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{AnyUserData, Lua, UserData};

/// Where a handle points: the view of the call in progress, or nothing.
pub struct Lent<T> {
    /// Which Lua state's handle this is: values a view keeps for Lua
    /// (`req.ctx`) belong to one state, and a reload makes another.
    state: u64,
    view: Cell<*mut T>,
    /// A method is using the view: another (from a `__gc` finalizer run by
    /// an allocation inside the first) must not alias it.
    busy: Cell<bool>,
}

/// What Lua holds: the same `Lent` as the router's.
pub struct Handle<T>(Rc<Lent<T>>);

impl<T> Handle<T> {
    /// The Lua state this handle serves (one number per router made).
    pub fn state(&self) -> u64 {
        self.0.state
    }

    /// The view, for the length of `use_view`; an error once the call that
    /// lent it is over (a script kept `req` in a global) or while another
    /// method uses it.
    pub fn with<R>(&self, use_view: impl FnOnce(&mut T) -> mlua::Result<R>) -> mlua::Result<R> {
        let lent = &self.0;
        let view = lent.view.get();
        if view.is_null() {
            return Err(mlua::Error::runtime(
                "this request or response belongs to a hook call that has ended",
            ));
        }
        if lent.busy.replace(true) {
            return Err(mlua::Error::runtime(
                "this request or response is in use by another call",
            ));
        }
        /// Sets `busy` back however `use_view` ends, by a panic too.
        struct Free<'a>(&'a Cell<bool>);
        impl Drop for Free<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _free = Free(&lent.busy);
        // SAFETY: `view` was made from a `&mut T` by `Lender::lend`, which
        // holds that borrow (using the view through nothing else) until the
        // call returns or unwinds and then puts the pointer back; `busy`
        // makes this the only reference made from it at a time, and the
        // loop is one thread.
        use_view(unsafe { &mut *view })
    }
}

/// The router's side: lends a view to the handle for one call.
pub struct Lender<T> {
    lent: Rc<Lent<T>>,
    pub handle: AnyUserData,
}

impl<T: 'static> Lender<T>
where
    Handle<T>: UserData,
{
    pub fn new(lua: &Lua) -> mlua::Result<Lender<T>> {
        static STATES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let lent = Rc::new(Lent {
            state: STATES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            view: Cell::new(std::ptr::null_mut()),
            busy: Cell::new(false),
        });
        let handle = lua.create_userdata(Handle(lent.clone()))?;
        Ok(Lender { lent, handle })
    }

    /// Runs `call` with the handle pointing at `view`; afterwards, and if
    /// `call` panics, it points where it pointed before (nowhere, unless a
    /// lend is nested in another).
    pub fn lend<R>(&self, view: &mut T, call: impl FnOnce() -> R) -> R {
        struct Return<'a, T> {
            lent: &'a Lent<T>,
            before: *mut T,
        }
        impl<T> Drop for Return<'_, T> {
            fn drop(&mut self) {
                self.lent.view.set(self.before);
            }
        }
        let before = self.lent.view.replace(view);
        let _return = Return {
            lent: &self.lent,
            before,
        };
        call()
    }
}

/// What mlua's scope would cost instead (for the measurement in
/// `router::tests`): a userdata made for `view` in a scope, for one call,
/// with the same methods as the lent handle.
#[cfg(test)]
pub fn scoped<T: 'static, R>(
    lua: &Lua,
    view: &mut T,
    call: impl FnOnce(&AnyUserData) -> mlua::Result<R>,
) -> mlua::Result<R>
where
    Handle<T>: UserData,
{
    let handle = Handle(Rc::new(Lent {
        state: 0,
        view: Cell::new(view),
        busy: Cell::new(false),
    }));
    // A reference to a 'static type: mlua keeps its metatable across
    // scopes, as it would for the view itself (`create_userdata` rebuilds
    // it for each value, some 15 µs a call here).
    lua.scope(|scope| call(&scope.create_userdata_ref(&handle)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::{Function, UserDataMethods};

    struct Probe(u32);

    impl UserData for Handle<Probe> {
        fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
            methods.add_method("get", |_, this, ()| this.with(|probe| Ok(probe.0)));
            methods.add_method("boom", |_, this, ()| {
                this.with(|_| -> mlua::Result<()> { panic!("a bug in a view's method") })
            });
        }
    }

    /// A panic in a method, resumed by mlua once Lua has returned, unwinds
    /// through `with` and `lend`: the handle points nowhere afterwards and
    /// is not left busy, so the next call works.
    #[test]
    fn a_panic_through_a_call_leaves_the_handle_clean() {
        let lua = Lua::new();
        let lender = Lender::<Probe>::new(&lua).unwrap();
        let boom: Function = lua
            .load("return function(p) return p:boom() end")
            .eval()
            .unwrap();
        let get: Function = lua
            .load("return function(p) return p:get() end")
            .eval()
            .unwrap();
        let mut probe = Probe(7);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lender.lend(&mut probe, || boom.call::<()>(&lender.handle))
        }));
        assert!(unwound.is_err(), "the panic reached the caller");
        assert!(lender.lent.view.get().is_null());
        assert!(!lender.lent.busy.get());
        let after = lender.lend(&mut probe, || get.call::<u32>(&lender.handle));
        assert_eq!(after.unwrap(), 7);
        let kept = get.call::<u32>(&lender.handle).unwrap_err().to_string();
        assert!(kept.contains("has ended"), "{kept}");
    }

    /// A lend inside another gives the outer view back when it ends.
    #[test]
    fn a_nested_lend_restores_the_outer_view() {
        let lua = Lua::new();
        let lender = Lender::<Probe>::new(&lua).unwrap();
        let get: Function = lua
            .load("return function(p) return p:get() end")
            .eval()
            .unwrap();
        let (mut outer, mut inner) = (Probe(1), Probe(2));
        let seen = lender.lend(&mut outer, || {
            let inner_seen = lender.lend(&mut inner, || get.call::<u32>(&lender.handle));
            (
                inner_seen.unwrap(),
                get.call::<u32>(&lender.handle).unwrap(),
            )
        });
        assert_eq!(seen, (2, 1));
    }
}
