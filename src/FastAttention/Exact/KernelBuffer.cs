using System.Buffers;
using System.Runtime.InteropServices;

namespace FastAttention.Exact;

/// <summary>
/// A kernel's working buffer: rented from <see cref="ArrayPool{T}.Shared"/> (so repeated calls reuse memory instead of
/// allocating pinned arrays, which cost full garbage collections), pinned for the call, its pointer aligned to 64 bytes (a
/// cache line: vector loads never straddle two). Contents are unspecified unless cleared at construction.
/// </summary>
internal unsafe sealed class KernelBuffer<T> : IDisposable where T : unmanaged
{
    private T[]? _array;
    private GCHandle _handle;

    public KernelBuffer(long length, bool clear = false)
    {
        Length = length;
        int extra = 64 / sizeof(T);
        _array = ArrayPool<T>.Shared.Rent(checked((int)length + extra));
        _handle = GCHandle.Alloc(_array, GCHandleType.Pinned);
        nint address = _handle.AddrOfPinnedObject();
        Pointer = (T*)((address + 63) & ~(nint)63);
        if (clear) new Span<T>(Pointer, (int)length).Clear();
    }

    /// <summary>The aligned start of <see cref="Length"/> usable elements.</summary>
    public T* Pointer { get; }

    public long Length { get; }

    public void Dispose()
    {
        if (_array is null) return;
        _handle.Free();
        ArrayPool<T>.Shared.Return(_array);
        _array = null;
    }
}
