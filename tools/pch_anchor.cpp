// The one source of quantlab_exe_pch, the target that compiles the executables' precompiled header.
