"""The few ctypes pieces the runtime's hot path needs, made straight from the _ctypes C module.

`import ctypes` costs about 2.5-3.5 ms at every corral-runc start (its package builds dozens of
types and a libffi closure); the runtime needs only C integers, structures, byref and calls
into libc. The names match ctypes', so a module can `from corral.oci.linux import cabi as
ctypes`; objects of either kind can be passed to functions of the other. 64-bit Linux only
(the syscall numbers in syscalls.py are x86_64's already).
"""

import _ctypes
from _ctypes import POINTER, Structure, addressof, byref, get_errno, sizeof  # noqa: F401


class c_ushort(_ctypes._SimpleCData):
    _type_ = "H"


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


c_uint32 = c_uint
c_uint64 = c_ulong  # LP64
c_size_t = c_ulong


class CDLL:
    """A loaded library (None: the program and libc); its functions are attributes, returning
    int by default. use_errno as in ctypes: get_errno() reads errno after a call."""

    _base_flags = _ctypes.FUNCFLAG_CDECL

    def __init__(self, name, use_errno=False):
        flags = self._base_flags | (_ctypes.FUNCFLAG_USE_ERRNO if use_errno else 0)
        self._handle = _ctypes.dlopen(name, 0)  # RTLD_LOCAL, as ctypes.CDLL; _ctypes adds RTLD_NOW

        class _Function(_ctypes.CFuncPtr):
            _flags_ = flags
            _restype_ = c_int
        self._Function = _Function

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        func = self._Function((name, self))
        setattr(self, name, func)
        return func


class PyDLL(CDLL):
    """Functions called with the GIL held (ctypes.PyDLL): for the Python C API."""

    _base_flags = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI
