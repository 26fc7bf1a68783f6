//! A view lent to Lua for the length of one hook call. The userdata Lua
//! holds (`req`, `res`) is made once per script and points at the view only
//! while a call runs: a call makes no userdata (and no garbage) for it,
//! which halved what an empty `respond()` cost (README, Performance).

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
        // SAFETY: `view` was made from a `&mut T` by `Lender::lend`, which
        // holds that borrow (using the view through nothing else) until the
        // call returns and then clears the pointer; `busy` makes this the
        // only reference made from it at a time, and the loop is one thread.
        let result = use_view(unsafe { &mut *view });
        lent.busy.set(false);
        result
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

    /// Runs `call` with the handle pointing at `view`.
    pub fn lend<R>(&self, view: &mut T, call: impl FnOnce() -> R) -> R {
        struct Return<'a, T>(&'a Lent<T>);
        impl<T> Drop for Return<'_, T> {
            fn drop(&mut self) {
                self.0.view.set(std::ptr::null_mut());
            }
        }
        self.lent.view.set(view);
        let _return = Return(&self.lent);
        call()
    }
}
