namespace FastAttention.Cli.Infrastructure;

/// <summary>How benchmark and demo inputs are drawn.</summary>
internal enum Distribution { Uniform, Normal, Line, Clustered, Strip, Constant, Sphere }

/// <summary>Seeded random Q, K, V for demos, benchmarks and experiments (float64; converted when f32 is asked).</summary>
internal static class Instances
{
    /// <summary>Entries uniform in [−bound, bound] (Normal: N(0, (bound/3)²) clipped to ±bound; Line: the diagonal line
    /// t·(1,…,1); Clustered: 16 tight clusters; Strip: first coordinate uniform, second within ±0.35·bound/30 (the issue's
    /// strip of half-width 0.35 at B = 30), others uniform; Constant: (t, t, 0, …, 0); Sphere: the upper cap
    /// (last coordinate ≥ 0.6·radius, roughly) of the sphere of radius bound).</summary>
    public static double[] Matrix(int rows, int cols, double bound, int seed, Distribution dist = Distribution.Uniform)
    {
        var rng = new Random(seed);
        var a = new double[rows * cols];
        switch (dist)
        {
            case Distribution.Uniform:
                for (int i = 0; i < a.Length; i++) a[i] = (2 * rng.NextDouble() - 1) * bound;
                break;
            case Distribution.Normal:
                for (int i = 0; i < a.Length; i++) a[i] = Math.Clamp(Gaussian(rng) * bound / 3, -bound, bound);
                break;
            case Distribution.Line:
                for (int r = 0; r < rows; r++)
                {
                    double t = (2 * rng.NextDouble() - 1) * bound;
                    for (int c = 0; c < cols; c++) a[r * cols + c] = t;
                }
                break;
            case Distribution.Strip:
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                        a[r * cols + c] = (2 * rng.NextDouble() - 1) * bound * (c == 1 ? 0.35 / 30 : 1);
                break;
            case Distribution.Constant:
                for (int r = 0; r < rows; r++)
                {
                    double t = (2 * rng.NextDouble() - 1) * bound;
                    for (int c = 0; c < cols; c++) a[r * cols + c] = c < 2 ? t : 0;
                }
                break;
            case Distribution.Sphere:
                for (int r = 0; r < rows; r++)
                {
                    double norm = 0;
                    for (int c = 0; c < cols; c++)
                    {
                        double x = c == cols - 1 ? 0.6 + 0.4 * rng.NextDouble() : 2 * rng.NextDouble() - 1;
                        a[r * cols + c] = x; norm += x * x;
                    }
                    norm = Math.Sqrt(norm);
                    for (int c = 0; c < cols; c++) a[r * cols + c] *= bound / norm;
                }
                break;
            case Distribution.Clustered:
                var centres = new double[16 * cols];
                for (int i = 0; i < centres.Length; i++) centres[i] = (2 * rng.NextDouble() - 1) * bound * 0.9;
                for (int r = 0; r < rows; r++)
                {
                    int cl = rng.Next(16);
                    for (int c = 0; c < cols; c++)
                        a[r * cols + c] = Math.Clamp(centres[cl * cols + c] + (2 * rng.NextDouble() - 1) * bound * 0.05, -bound, bound);
                }
                break;
        }
        return a;
    }

    public static float[] ToFloat32(double[] a)
    {
        var r = new float[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = (float)a[i];
        return r;
    }

    public static Distribution ParseDistribution(string s) => s.ToLowerInvariant() switch
    {
        "uniform" => Distribution.Uniform,
        "normal" => Distribution.Normal,
        "line" => Distribution.Line,
        "clustered" => Distribution.Clustered,
        "strip" => Distribution.Strip,
        "constant" => Distribution.Constant,
        "sphere" => Distribution.Sphere,
        _ => throw new UsageException($"--distribution must be uniform, normal, line, clustered, strip, constant or sphere (got '{s}')."),
    };

    /// <summary>Distinct sorted random row indices (all rows when count ≥ n).</summary>
    public static int[] SampleRows(int n, int count, int seed)
    {
        if (count >= n) return Enumerable.Range(0, n).ToArray();
        var rng = new Random(seed);
        var set = new HashSet<int>();
        while (set.Count < count) set.Add(rng.Next(n));
        var rows = set.ToArray();
        Array.Sort(rows);
        return rows;
    }

    private static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
