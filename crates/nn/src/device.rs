//! Which burn device runs the models.
//!
//! The default build runs on Flex, burn's pure-Rust CPU backend. Building with
//! `--features cuda` (NVIDIA) or `--features wgpu` (Vulkan/Metal/DX12) moves every tensor
//! operation to that GPU backend without other changes; `PRIVPKT_DEVICE=cpu` forces Flex at run
//! time in such a build. Deep Packet's hand-differentiated convolution block and the DP-SGD
//! engine work on host memory and stay on the CPU; on a GPU the network uses the autodiff
//! im2col convolution instead (see [`crate::ConvImpl`]), whose probes feed DP-SGD alike.

use burn::tensor::Device;

/// True when a GPU backend was compiled in and not overridden by `PRIVPKT_DEVICE=cpu`.
pub fn gpu_selected() -> bool {
    cfg!(any(feature = "cuda", feature = "wgpu")) && std::env::var("PRIVPKT_DEVICE").map_or(true, |v| v != "cpu")
}

/// The device models compute on (plain; `.autodiff()` for training).
pub fn compute() -> Device {
    #[cfg(feature = "cuda")]
    if gpu_selected() {
        return Device::cuda(0);
    }
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    if gpu_selected() {
        return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    }
    Device::flex()
}

/// A one-line description for logs and benchmark records.
pub fn describe() -> &'static str {
    if !gpu_selected() {
        "CPU (burn Flex)"
    } else if cfg!(feature = "cuda") {
        "GPU (burn CUDA)"
    } else {
        "GPU (burn wgpu)"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_build_computes_on_flex() {
        if !cfg!(any(feature = "cuda", feature = "wgpu")) {
            assert!(!super::gpu_selected());
            assert_eq!(super::describe(), "CPU (burn Flex)");
        }
    }
}
