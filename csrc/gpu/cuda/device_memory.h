// Device memory for the outputs and temporaries of our kernels inside MLX's
// CUDA backend.
//
// Why not mx::allocator::malloc: in MLX-CUDA 0.32 that is
// CudaAllocator::malloc_async(size, device = -1, stream = nullptr), i.e. a
// request for *unified* memory. When its buffer cache hands back a device
// buffer that one of MLX's own ops freed (which, in a model, is the usual
// case: same sizes), it first moves it to unified memory: cudaMallocManaged
// plus a synchronous cudaMemcpy, on every call. MLX's ops allocate device
// memory through cu::malloc_async(size, encoder), which libmlx does not
// export. So we allocate device memory ourselves (cudaMallocAsync on the
// encoder's stream, from the device's default pool as MLX does) and keep it in
// a small cache of our own, and hand it to MLX wrapped in MLX's own buffer
// record (cu::CudaBuffer {data, size, device}), which is what gpu_ptr and
// MLX's allocator read. When MLX needs the data on the host it moves such a
// buffer to unified memory itself (freeing our device pointer with
// cudaFreeAsync and marking the record device = -1); our deleter then frees
// the unified copy.
#pragma once

#ifdef BITNET_EXT_CUDA

#include <cstddef>

#include "mlx/array.h"
#include "mlx/backend/cuda/device.h"

namespace bitnet_ext::cuda {

namespace mx = mlx::core;

// Gives `a` (not yet allocated) `bytes` of device memory on the encoder's
// device; `bytes` == 0 gets MLX's empty buffer.
void set_device_data(mx::array& a, size_t bytes, mx::cu::CommandEncoder& enc);

// Device memory held in our cache (freed buffers waiting for reuse), in bytes.
size_t cached_device_bytes();

} // namespace bitnet_ext::cuda

#endif // BITNET_EXT_CUDA
