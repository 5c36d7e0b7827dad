//! Worker processes die with their parent: on Linux the kernel sends them a
//! signal when the parent dies, however it dies (SIGKILL included). Elsewhere
//! the supervisor watches a pipe instead (python/maitre/supervisor.py).

use std::os::raw::{c_int, c_ulong};

use pyo3::prelude::*;

const PR_SET_PDEATHSIG: c_int = 1;

extern "C" {
    fn prctl(option: c_int, ...) -> c_int;
}

/// Asks the kernel to send `signum` to this process when the thread that forked
/// it exits. The parent may have died already: compare `os.getppid()` with its
/// pid afterwards.
#[pyfunction]
pub fn set_parent_death_signal(signum: c_int) -> PyResult<()> {
    let arg = c_ulong::try_from(signum)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err("invalid signal number"))?;
    // SAFETY: declared as in <sys/prctl.h>; PR_SET_PDEATHSIG reads one integer
    // argument by value and touches no memory of ours.
    if unsafe { prctl(PR_SET_PDEATHSIG, arg) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
