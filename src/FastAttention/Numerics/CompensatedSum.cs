using System.Runtime.CompilerServices;

namespace FastAttention.Numerics;

/// <summary>Neumaier's compensated summation: error O(ε·Σ|xᵢ|) independent of the number of terms.</summary>
public struct CompensatedSum
{
    private double _sum, _c;

    /// <summary>The compensated sum of everything added so far (sum + correction).</summary>
    public readonly double Value => _sum + _c;

    /// <summary>Adds <paramref name="x"/>, carrying the rounding error of the addition in the correction term.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(double x)
    {
        double t = _sum + x;
        if (Math.Abs(_sum) >= Math.Abs(x)) _c += (_sum - t) + x;
        else _c += (x - t) + _sum;
        _sum = t;
    }

    /// <summary>Compensated dot product of two equal-length spans.</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        var s = new CompensatedSum();
        for (int i = 0; i < a.Length; i++)
        {
            double p = a[i] * b[i];
            s.Add(p);
            s.Add(Math.FusedMultiplyAdd(a[i], b[i], -p)); // the product's rounding error (TwoProduct)
        }
        return s.Value;
    }
}
