// Precompiled header: the heavy libtorch include, shared by every translation unit of the project.
#pragma once
#include <torch/torch.h>
