using System.Runtime.CompilerServices;

namespace FastAttention.Numerics;

/// <summary>Neumaier's compensated summation: error O(ε·Σ|xᵢ|) independent of the number of terms.</summary>
public struct CompensatedSum
{
    private double _sum, _c;

    public readonly double Value => _sum + _c;

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
