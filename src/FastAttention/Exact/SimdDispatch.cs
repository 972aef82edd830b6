using System.Numerics;
using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>A kernel written once against <see cref="ISimd{T,TV}"/>; <see cref="SimdDispatch"/> instantiates it at one width.
/// Implement it on a struct holding the kernel's arguments (typed pointers are re-viewed with <c>Unsafe.As</c>, since
/// <typeparamref name="TResult"/>-returning <c>Run</c> sees T only as a type parameter).</summary>
internal interface ISimdKernel<TResult>
{
    TResult Run<T, TV, TS>()
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TV : unmanaged
        where TS : struct, ISimd<T, TV>;
}

/// <summary>
/// The one SIMD dispatch ladder (Vector512 → Vector256 → Vector128 → scalar) used by the forward and backward kernels and
/// by the machine limits (FMA peak, exp limit, bandwidth). A forced width that the CPU lacks throws instead of
/// silently running a narrower one.
/// </summary>
internal static class SimdDispatch
{
    /// <summary>Runs <paramref name="kernel"/> at <paramref name="forcedFloat32Lanes"/> (0 = the widest the CPU has) for
    /// element type <typeparamref name="T"/> (float or double); returns its result.</summary>
    public static TResult Run<T, TKernel, TResult>(ref TKernel kernel, int forcedFloat32Lanes = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TKernel : struct, ISimdKernel<TResult>
    {
        int lanes = SimdInfo.Resolve(forcedFloat32Lanes);
        if (typeof(T) == typeof(float))
            return lanes switch
            {
                16 => kernel.Run<float, Vector512<float>, Simd512F>(),
                8 => kernel.Run<float, Vector256<float>, Simd256F>(),
                4 => kernel.Run<float, Vector128<float>, Simd128F>(),
                _ => kernel.Run<float, float, ScalarSimd<float>>(),
            };
        if (typeof(T) == typeof(double))
            return lanes switch
            {
                16 => kernel.Run<double, Vector512<double>, Simd512D>(),
                8 => kernel.Run<double, Vector256<double>, Simd256D>(),
                4 => kernel.Run<double, Vector128<double>, Simd128D>(),
                _ => kernel.Run<double, double, ScalarSimd<double>>(),
            };
        throw new NotSupportedException($"element type {typeof(T).Name} has no SIMD kernel; use float or double.");
    }
}
