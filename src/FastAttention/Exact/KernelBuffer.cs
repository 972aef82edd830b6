using System.Buffers;
using System.Runtime.InteropServices;

namespace FastAttention.Exact;

/// <summary>
/// A kernel's or one call's working buffer: rented from <see cref="ArrayPool{T}.Shared"/> (so repeated calls reuse memory instead of
/// allocating pinned arrays, which cost full garbage collections, or fresh large arrays, whose every first touch of a page
/// is a page fault: the range engine's per-call temporaries were 40 % of a d = 1, n = 2²⁰ run's allocations), pinned for
/// the call, its pointer aligned to 64 bytes (a cache line: vector loads never straddle two). Contents are unspecified
/// unless cleared at construction.
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

    /// <summary>The <see cref="Length"/> usable elements as a span (for temporaries read through indices, e.g. a query order).</summary>
    public Span<T> Span => new(Pointer, checked((int)Length));

    public void Dispose()
    {
        if (_array is null) return;
        _handle.Free();
        ArrayPool<T>.Shared.Return(_array);
        _array = null;
    }
}
