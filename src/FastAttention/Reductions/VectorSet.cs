namespace FastAttention.Reductions;

/// <summary>
/// A set of <see cref="Count"/> vectors of dimension <see cref="Dimension"/>, row-major (the A or B side of a
/// reduction). Validated at construction; helpers check 0/1 and integer entries.
/// </summary>
public sealed class VectorSet
{
    /// <summary>Wraps <paramref name="data"/> (not copied) as <paramref name="count"/> row vectors of
    /// <paramref name="dimension"/> coordinates; <paramref name="paramName"/> names the set in messages.</summary>
    /// <exception cref="ArgumentException">No vectors, a negative dimension, a length that is not count × dimension,
    /// or a non-finite entry.</exception>
    public VectorSet(double[] data, int count, int dimension, string paramName = "vectors")
    {
        ArgumentNullException.ThrowIfNull(data, paramName);
        if (count < 1) throw new ArgumentException($"{paramName} needs at least one vector (got {count}).", paramName);
        if (dimension < 0) throw new ArgumentException($"{paramName}: the dimension must be non-negative (got {dimension}).", paramName);
        if ((long)count * dimension != data.Length)
            throw new ArgumentException($"{paramName} has {data.Length} entries but {count}×{dimension} needs {(long)count * dimension}.", paramName);
        for (int i = 0; i < data.Length; i++)
            if (!double.IsFinite(data[i]))
                throw new ArgumentException($"{paramName} contains a non-finite value at vector {i / Math.Max(dimension, 1)}, coordinate {i % Math.Max(dimension, 1)}.", paramName);
        Data = data; Count = count; Dimension = dimension; Name = paramName;
    }

    /// <summary>The coordinates, row-major: vector i is Data[i·d .. (i + 1)·d).</summary>
    public double[] Data { get; }
    /// <summary>Number of vectors.</summary>
    public int Count { get; }
    /// <summary>Coordinates per vector.</summary>
    public int Dimension { get; }
    internal string Name { get; }

    /// <summary>Vector <paramref name="i"/> (0-based).</summary>
    public ReadOnlySpan<double> this[int i] => Data.AsSpan(i * Dimension, Dimension);

    /// <summary>Builds a set from rows (all the same length).</summary>
    public static VectorSet FromRows(IReadOnlyList<double[]> rows, string paramName = "vectors")
    {
        ArgumentNullException.ThrowIfNull(rows, paramName);
        if (rows.Count == 0) throw new ArgumentException($"{paramName} needs at least one vector.", paramName);
        int d = rows[0].Length;
        var data = new double[rows.Count * d];
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Length != d) throw new ArgumentException($"{paramName}: vector {i} has dimension {rows[i].Length}, vector 0 has {d}.", paramName);
            rows[i].CopyTo(data, i * d);
        }
        return new VectorSet(data, rows.Count, d, paramName);
    }

    /// <summary>Throws unless every entry is 0 or 1.</summary>
    public void RequireBinary()
    {
        for (int i = 0; i < Data.Length; i++)
            if (Data[i] != 0 && Data[i] != 1)
                throw new ArgumentException($"{Name} must be 0/1 vectors; vector {i / Dimension}, coordinate {i % Dimension} is {Data[i]}.", Name);
    }

    /// <summary>Throws unless every entry is an integer of magnitude at most <paramref name="limit"/>.</summary>
    public void RequireIntegers(double limit)
    {
        for (int i = 0; i < Data.Length; i++)
            if (Math.Round(Data[i]) != Data[i] || Math.Abs(Data[i]) > limit)
                throw new ArgumentException($"{Name} must hold integers of magnitude at most {limit}; vector {i / Dimension}, coordinate {i % Dimension} is {Data[i]}.", Name);
    }

    /// <summary>max |entry| (0 for an empty dimension).</summary>
    public double MaxAbs()
    {
        double m = 0;
        foreach (double x in Data) m = Math.Max(m, Math.Abs(x));
        return m;
    }

    /// <summary>The dot product of vectors computed exactly enough for integers (plain float64 sum).</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int l = 0; l < a.Length; l++) s += a[l] * b[l];
        return s;
    }

    /// <summary>Hamming distance of two 0/1 vectors.</summary>
    public static int Hamming(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        int h = 0;
        for (int l = 0; l < a.Length; l++) if (a[l] != b[l]) h++;
        return h;
    }
}
