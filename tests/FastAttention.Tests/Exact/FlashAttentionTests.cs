using CsCheck;
using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

public class FlashAttentionTests
{
    /// <summary>The remainder sweep of lengths: around the vector, the register block, the tiles, and a large odd one.</summary>
    internal static readonly int[] Sizes = [1, 2, 7, 63, 64, 65, 1000, 4097];
    private const double U32 = 5.96e-8; // 2⁻²⁴

    public static TheoryData<int, int> SizePairs()
    {
        var data = new TheoryData<int, int>();
        foreach (int n in Sizes) foreach (int m in Sizes) data.Add(n, m);
        return data;
    }

    /// <summary>float32 tolerance from the precision: logit rounding (∝ max |logit|) plus √m-scaled accumulation.</summary>
    internal static double Float32Tolerance(double maxAbsLogit, int m, double vMax) => vMax * U32 * (32 + 4 * maxAbsLogit + 8 * Math.Sqrt(m));

    /// <summary>Rows checked against the reference: all, or for large problems (n &gt; 1000 or n·m &gt; 300 000) the first, the
    /// last, the tile edges and a spread between.</summary>
    internal static int[] CheckedRows(int n, int m) => n <= 1000 && (long)n * m <= 300_000 ? Enumerable.Range(0, n).ToArray()
        : new[] { 0, 1, 2, 5, 6, 11, 12, 63, 64, 65, 127, 258, n / 3, n / 2, n - 66, n - 65, n - 7, n - 6, n - 2, n - 1 }
            .Where(i => i >= 0 && i < n).Distinct().Order().ToArray();

    /// <summary>max |output − reference| over <see cref="CheckedRows"/> of every head.</summary>
    internal static double Error<T>(AttentionProblem<T> p, ReadOnlySpan<T> output) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        var rows = CheckedRows(p.N, p.M);
        double e = 0;
        for (int h = 0; h < p.Heads; h++)
        {
            var reference = ReferenceAttention.ComputeRows(p, h, rows);
            for (int r = 0; r < rows.Length; r++)
                for (int c = 0; c < p.Dv; c++)
                {
                    double diff = Math.Abs(double.CreateTruncating(output[(h * p.N + rows[r]) * p.Dv + c]) - reference[r * p.Dv + c]);
                    e = double.IsNaN(diff) ? double.PositiveInfinity : Math.Max(e, diff);
                }
        }
        return e;
    }

    internal static AttentionProblem<float> ToFloat32(AttentionProblem<double> p) =>
        new(TestData.ToFloat(p.Q.ToArray()), TestData.ToFloat(p.K.ToArray()), TestData.ToFloat(p.V.ToArray()), p.N, p.M, p.D, p.Dv, p.Heads, p.Scale, p.Causal);

    /// <summary>Checks <paramref name="alg"/> in f64 and f32 on one shape; returns the certificate parameters of the f32 run.</summary>
    internal static FlashParameters Check(FlashAttention alg, int n, int m, int d, int dv, bool causal, int threads, int seed,
        double bound = 1.0, int heads = 1)
    {
        string shape = $"n={n} m={m} d={d} dv={dv} causal={causal} threads={threads} heads={heads} tuning={alg.Tuning}";
        var p = TestData.Problem(n, m, d, dv, bound, seed, causal: causal, heads: heads);
        double e64 = Error(p, alg.Compute(p, new AttentionSettings { Threads = threads }).Output);
        Assert.True(e64 <= 1e-12 * p.VMax, $"f64 {shape}: error {e64:E3}");
        var p32 = ToFloat32(p);
        var r32 = alg.Compute(p32, new AttentionSettings { Threads = threads });
        double e32 = Error(p32, r32.Output), tol = Float32Tolerance(p.Scale * d * bound * bound, m, p32.VMax);
        Assert.True(e32 <= tol, $"f32 {shape}: error {e32:E3} > {tol:E3}");
        return r32.Certificate.ParametersOf<FlashParameters>();
    }

    [Theory]
    [MemberData(nameof(SizePairs))]
    public void Matches_the_reference_across_shapes_causal_and_precisions(int n, int m)
    {
        // The default plan: decode for n ≤ 16, the exp-bound loop for d ≤ 4, prefill otherwise; d_v = d (V in place) and
        // d_v ≠ d (padded V); key splits wherever the tiles are fewer than the threads.
        bool large = (long)n * m > 1_000_000;
        foreach (int d in large ? new[] { 4, 64 } : new[] { 1, 3, 8, 64, 128 })
        {
            int dv = (n + m + d) % 2 == 0 ? d : d + 3;
            foreach (bool causal in new[] { false, true })
                Check(new FlashAttention(), n, m, d, dv, causal, threads: 2, seed: n * 7919 + m * 31 + d);
        }
    }

    public static TheoryData<string, int> PathsAndSplits() => new()
    {
        { "General", 1 }, { "General", 3 }, { "SmallD", 1 }, { "SmallD", 3 },
        { "Decode", 1 }, { "Decode", 3 },
    };

    [Theory]
    [MemberData(nameof(PathsAndSplits))]
    public void Every_path_with_and_without_key_splits_matches_the_reference_over_the_remainder_sweep(string pathName, int splits)
    {
        var path = Enum.Parse<FlashPath>(pathName);
        // Small forced tiles and blocks, so that the remainder sweep crosses tile, block and split boundaries.
        var alg = new FlashAttention { Tuning = new FlashTuning(Path: path, QueryTile: 12, KeyBlock: 16, KeySplits: splits) };
        int[] ds = path == FlashPath.SmallD ? [1, 2, 3, 4] : [1, 5, 8, 33];
        int cases = 0;
        foreach (int n in path == FlashPath.Decode ? new[] { 1, 2, 7, 16 } : Sizes.Where(s => s <= 1000))
            foreach (int m in Sizes)
            {
                if ((long)n * m > 300_000) continue;
                int d = ds[(n + m) % ds.Length], dv = path == FlashPath.SmallD ? 1 + (n + 2 * m) % 4 : d + (n + m) % 3;
                foreach (bool causal in new[] { false, true })
                {
                    var parameters = Check(alg, n, m, d, dv, causal, threads: 3, seed: n * 131 + m + d);
                    Assert.Equal(path.ToString(), parameters.Path);
                    cases++;
                }
            }
        Assert.True(cases >= 40, $"only {cases} cases ran");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public unsafe void V_column_panels_and_V_rows_in_place_agree_bit_for_bit_over_the_remainder_sweep(bool wide)
    {
        // The prefill path packs V as column panels (the register blocks' column widths, in their order), or reads V rows
        // in place (padded rows when d_v is not whole vectors): the same FMAs in the same order, so the same bits.
        int cases = 0;
        foreach (int n in Sizes.Where(s => s <= 1000))
            foreach (int m in Sizes)
            {
                if ((long)n * m > 300_000) continue;
                int d = 1 + (n + m) % 40, dv = 1 + (n * 3 + m) % 70;
                bool causal = (n + m) % 2 == 0;
                var p32 = ToFloat32(TestData.Problem(n, m, d, dv, 1.0, seed: n * 17 + m, causal: causal));
                float[]? previous = null;
                foreach (bool panels in new[] { true, false })
                {
                    var tuning = new FlashTuning(Path: FlashPath.General, QueryTile: 12, KeyBlock: 40, WideBlocks: wide, VPanels: panels);
                    var plan = FlashKernels.Plan(FlashParams<float>.Contiguous(null, null, null, null, null, 1, n, m, d, dv, p32.Scale, causal), 2, tuning);
                    Assert.Equal(panels, plan.VPanels);
                    var output = new FlashAttention { Tuning = tuning }.Compute(p32, new AttentionSettings { Threads = 2 }).Output;
                    double e = Error(p32, output), tol = Float32Tolerance(p32.Scale * d, m, p32.VMax);
                    Assert.True(e <= tol, $"n={n} m={m} d={d} dv={dv} panels={panels}: error {e:E3} > {tol:E3}");
                    if (previous is not null) Assert.True(previous.AsSpan().SequenceEqual(output), $"n={n} m={m} d={d} dv={dv} wide={wide}: panels and rows differ");
                    previous = output;
                }
                cases++;
            }
        Assert.True(cases >= 30, $"only {cases} cases ran");
    }

    /// <summary>Key counts and value widths over every remainder of the key block, the register block (6 rows, 2 or 4
    /// vectors) and the vector; both register blockings; every path; asserts the width that really ran.</summary>
    private static void WidthSweep(int lanes, bool wide)
    {
        int expectedBits = lanes == 1 ? 0 : lanes * 32;
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
        {
            var alg = new FlashAttention { ForcedFloat32Lanes = lanes, Tuning = new FlashTuning(Path: path, WideBlocks: wide, KeySplits: path == FlashPath.Decode ? 2 : 0) };
            for (int m = 1; m <= 70; m += 3)
                for (int dv = 1; dv <= 35; dv += 4)
                {
                    int n = path == FlashPath.Decode ? 1 + (m + dv) % 16 : 1 + (m * 5 + dv) % 40;
                    int d = path == FlashPath.SmallD ? 1 + (m + dv) % 4 : 1 + (m + dv) % 9;
                    int dvUsed = path == FlashPath.SmallD ? 1 + dv % 4 : dv;
                    bool causal = (m + dv) % 3 == 0;
                    var p = TestData.Problem(n, m, d, dvUsed, 1.5, seed: m * 100 + dv, causal: causal);
                    var r = alg.Compute(p, new AttentionSettings { Threads = 2 });
                    double e = TestData.MaxAbsDiff(r.Output, ReferenceAttention.Compute(p));
                    Assert.True(e <= 1e-12 * p.VMax, $"lanes={lanes} wide={wide} {path} n={n} m={m} d={d} dv={dvUsed} causal={causal}: f64 error {e:E3}");
                    int bits = r.Certificate.ParametersOf<FlashParameters>().VectorBits;
                    Assert.Equal(expectedBits == 0 ? 64 : expectedBits, bits); // f64: 8 bytes × lanes (scalar: one double)
                    var p32 = ToFloat32(p);
                    var r32 = alg.Compute(p32, new AttentionSettings { Threads = 2 });
                    double e32 = TestData.MaxAbsDiff(r32.Output, ReferenceAttention.Compute(p32));
                    Assert.True(e32 <= Float32Tolerance(1.5 * 1.5 * d, m, p32.VMax), $"lanes={lanes} {path} n={n} m={m} d={d} dv={dvUsed}: f32 error {e32:E3}");
                    Assert.Equal(expectedBits == 0 ? 32 : expectedBits, r32.Certificate.ParametersOf<FlashParameters>().VectorBits);
                    Assert.Equal(path.ToString(), r32.Certificate.ParametersOf<FlashParameters>().Path);
                }
        }
    }

    [SimdTheory(16)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector512_runs_512_bit_vectors_on_every_remainder(bool wide) => WidthSweep(16, wide);

    [SimdTheory(8)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector256_runs_256_bit_vectors_on_every_remainder(bool wide) => WidthSweep(8, wide);

    [SimdTheory(4)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector128_runs_128_bit_vectors_on_every_remainder(bool wide) => WidthSweep(4, wide);

    [Theory]
    [InlineData(false)]
    public void Scalar_runs_one_lane_on_every_remainder(bool wide) => WidthSweep(1, wide);

    [Fact]
    public void A_width_the_cpu_lacks_is_refused_not_narrowed()
    {
        var p = TestData.Problem(3, 5, 2, 2, 1.0, seed: 1);
        foreach (int lanes in new[] { 16, 8, 4 })
        {
            var alg = new FlashAttention { ForcedFloat32Lanes = lanes };
            if (SimdInfo.IsSupported(lanes))
                Assert.Equal(lanes * 32, alg.Compute(p).Certificate.ParametersOf<FlashParameters>().VectorBits);
            else
                Assert.Throws<PlatformNotSupportedException>(() => alg.Compute(p));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new FlashAttention { ForcedFloat32Lanes = 3 }.Compute(p));
    }

    [Theory]
    [InlineData("General", 300, 500, 24)]
    [InlineData("SmallD", 300, 700, 4)]
    [InlineData("Decode", 5, 3000, 64)]
    public void Results_are_bitwise_reproducible_with_the_same_thread_count(string pathName, int n, int m, int d)
    {
        var path = Enum.Parse<FlashPath>(pathName);
        // Fixed ownership of (head, tile, split) and split merges in split order: repeated runs agree bit for bit.
        var p = ToFloat32(TestData.Problem(n, m, d, d, 1.0, seed: 77, heads: 2));
        var alg = new FlashAttention { Tuning = new FlashTuning(Path: path) };
        foreach (int threads in new[] { 2, 3 })
        {
            var first = alg.Compute(p, new AttentionSettings { Threads = threads });
            for (int run = 0; run < 4; run++)
                Assert.True(first.Output.AsSpan().SequenceEqual(alg.Compute(p, new AttentionSettings { Threads = threads }).Output), $"{path} threads={threads} run {run}");
            var (o1, l1) = alg.ComputeWithLogSumExp(p, threads);
            var (o2, l2) = alg.ComputeWithLogSumExp(p, threads);
            Assert.True(o1.AsSpan().SequenceEqual(o2) && l1.AsSpan().SequenceEqual(l2));
        }
    }

    [Fact]
    public void Decode_splits_the_keys_across_threads_and_prefill_splits_the_queries()
    {
        var decode = TestData.Problem(1, 4000, 32, 32, 1.0, seed: 5);
        var r = new FlashAttention().Compute(decode, new AttentionSettings { Threads = 2 });
        Assert.Equal("Decode", r.Certificate.ParametersOf<FlashParameters>().Path);
        Assert.True(r.Certificate.ParametersOf<FlashParameters>().KeySplits >= 2, "at least one key split per thread");
        Assert.True(Error(decode, r.Output) <= 1e-12);
        var prefill = TestData.Problem(400, 300, 32, 32, 1.0, seed: 6);
        var rp = new FlashAttention().Compute(prefill, new AttentionSettings { Threads = 2 });
        Assert.Equal("General", rp.Certificate.ParametersOf<FlashParameters>().Path);
        Assert.Equal(1, rp.Certificate.ParametersOf<FlashParameters>().KeySplits);
        int tile = rp.Certificate.ParametersOf<FlashParameters>().QueryTile;
        Assert.True((400 + tile - 1) / tile >= 8, $"query tiles of {tile} rows: fewer than 4 per thread");
    }

    [Fact]
    public void Few_heads_on_many_threads_split_inside_each_head()
    {
        // One head on two threads: the decode path splits its keys. Through the kernel's all-heads entry, 2 heads on 8
        // threads split each head's keys 16 ways (4 per thread, 2 heads sharing them).
        var p1 = TestData.Problem(3, 2000, 16, 8, 1.0, seed: 9);
        var r = new FlashAttention().Compute(p1, new AttentionSettings { Threads = 2 });
        Assert.True(r.Certificate.ParametersOf<FlashParameters>().KeySplits >= 2, "one head's two threads split its keys");
        Assert.True(Error(p1, r.Output) <= 1e-12);
        var p = TestData.Problem(3, 2000, 16, 8, 1.0, seed: 9, heads: 2);
        var (o, lse) = new FlashAttention().ComputeWithLogSumExp(p, threads: 8);
        Assert.True(Error(p, o) <= 1e-12);
        var plan = FlashKernels.Plan(new FlashParams<double> { Batch = 1, Heads = 2, N = 3, M = 2000, D = 16, Dv = 8, Scale = 0.25 }, threads: 8);
        Assert.Equal(FlashPath.Decode, plan.Path);
        Assert.True(plan.KeySplits >= 4, $"{plan.KeySplits} splits for 2 heads on 8 threads");
    }

    [Theory]
    [InlineData("General", 40, 2000, 16)]
    [InlineData("SmallD", 40, 2000, 2)]
    [InlineData("Decode", 4, 2000, 16)]
    public void Logits_rising_block_after_block_move_the_reference_and_stay_exact(string pathName, int n, int m, int d)
    {
        var path = Enum.Parse<FlashPath>(pathName);
        // Keys ordered by ⟨q, k⟩ so each key block's max exceeds the last by more than the lazy-rescale threshold:
        // every block rescales, and the small-d fused loop must detect it and redo the block.
        var q = new double[n * d];
        for (int i = 0; i < n; i++) for (int c = 0; c < d; c++) q[i * d + c] = 1 + 0.01 * ((i + c) % 5);
        var k = new double[m * d];
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) k[j * d + c] = -40 + 80.0 * j / m / Math.Sqrt(d) + 0.001 * ((j * 7 + c) % 11);
        var v = TestData.Uniform(m * d, 1, 3);
        foreach (bool causal in new[] { false, true })
        {
            var p = new AttentionProblem<double>(q, k, v, n, m, d, d, scale: 1, causal: causal);
            var alg = new FlashAttention { Tuning = new FlashTuning(Path: path, KeyBlock: 64, KeySplits: path == FlashPath.Decode ? 3 : 0) };
            Assert.True(Error(p, alg.Compute(p, new AttentionSettings { Threads = 2 }).Output) <= 1e-12, $"{path} causal={causal} f64");
            var p32 = ToFloat32(p);
            double e32 = Error(p32, alg.Compute(p32, new AttentionSettings { Threads = 2 }).Output);
            Assert.True(e32 <= Float32Tolerance(80 * d, m, 1), $"{path} causal={causal} f32 error {e32:E3}");
        }
    }

    [Theory]
    [InlineData(16)]
    [InlineData(8)]
    public void Rows_that_move_their_reference_while_the_rest_of_their_strip_stays(int d)
    {
        // Keys ordered by ⟨q, k⟩ for queries of one sign and against it for the other: within each 6-row strip some rows
        // see every key block beat their reference (redone alone) and the others never do (their strip pass stands), in
        // patterns that change from strip to strip (i·7 mod 5).
        int n = 61, m = 2000;
        var q = new double[n * d];
        for (int i = 0; i < n; i++)
        {
            double sign = (i * 7) % 5 < 2 ? -1 : 1;
            for (int c = 0; c < d; c++) q[i * d + c] = sign * (1 + 0.01 * ((i + c) % 5));
        }
        var k = new double[m * d];
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) k[j * d + c] = -40 + 80.0 * j / m / Math.Sqrt(d) + 0.001 * ((j * 7 + c) % 11);
        var v = TestData.Uniform(m * d, 1, 5);
        foreach (bool causal in new[] { false, true })
        {
            var p = new AttentionProblem<double>(q, k, v, n, m, d, d, scale: 1, causal: causal);
            var alg = new FlashAttention { Tuning = new FlashTuning(Path: FlashPath.General, KeyBlock: 64) };
            double e64 = Error(p, alg.Compute(p, new AttentionSettings { Threads = 2 }).Output);
            Assert.True(e64 <= 1e-12, $"d={d} causal={causal} f64 error {e64:E3}");
            var p32 = ToFloat32(p);
            double e32 = Error(p32, alg.Compute(p32, new AttentionSettings { Threads = 2 }).Output);
            Assert.True(e32 <= Float32Tolerance(80 * d, m, 1), $"d={d} causal={causal} f32 error {e32:E3}");
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(16)]
    public unsafe void Extra_memory_at_n_m_65536_d_64_stays_within_64_MiB(int threads)
    {
        // The plan's working memory (packed Kᵀ, per-thread tiles, split states), float32 and float64, causal or not.
        foreach (bool causal in new[] { false, true })
        {
            var f32 = FlashKernels.Plan(FlashParams<float>.Contiguous(null, null, null, null, null, 1, 65536, 65536, 64, 64, 0.125, causal), threads);
            var f64 = FlashKernels.Plan(FlashParams<double>.Contiguous(null, null, null, null, null, 1, 65536, 65536, 64, 64, 0.125, causal), threads);
            Assert.True(f32.WorkingBytes <= 64L << 20, $"f32: {f32.WorkingBytes / 1048576.0:F1} MiB");
            Assert.True(f64.WorkingBytes <= 64L << 20, $"f64: {f64.WorkingBytes / 1048576.0:F1} MiB");
            Assert.True(f32.WorkingBytes >= 65536L * 64 * 4, "the packed Kᵀ alone is m·d elements");
        }
        // Decode reads K and V in place: only tiles and split states.
        var decode = FlashKernels.Plan(FlashParams<float>.Contiguous(null, null, null, null, null, 1, 1, 65536, 64, 64, 0.125, false), threads);
        Assert.True(decode.WorkingBytes < 1L << 20, $"decode: {decode.WorkingBytes} bytes");
    }

    [Theory]
    [InlineData(1e4)]
    [InlineData(1e6)]
    [InlineData(1e12)]
    public void Extreme_logits_give_the_near_one_hot_result_without_nan(double logit)
    {
        // Keys at logits L, L − 1, −L and a far key; the exact answer weights the first two e : 1.
        double a = Math.Sqrt(logit);
        double[] q = [a, 0], k = [a, 0, a - 1 / a, 0, -a, 0, 0, a], v = [1, 2, 3, 4];
        var p = new AttentionProblem<double>(q, k, v, 1, 4, 2, 1, scale: 1);
        var reference = ReferenceAttention.Compute(p);
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
        {
            var alg = new FlashAttention { Tuning = new FlashTuning(Path: path) };
            var o = alg.Compute(p).Output;
            Assert.All(o, x => Assert.True(double.IsFinite(x)));
            Assert.True(Math.Abs(o[0] - reference[0]) <= 1e-12 * 4 * Math.Max(1, logit * 1e-4), $"{path}: {o[0]} vs {reference[0]}");
            var p32 = new AttentionProblem<float>(TestData.ToFloat(q), TestData.ToFloat(k), TestData.ToFloat(v), 1, 4, 2, 1, scale: 1);
            var o32 = alg.Compute(p32).Output;
            Assert.True(float.IsFinite(o32[0]));
            Assert.True(Math.Abs(o32[0] - ReferenceAttention.Compute(p32)[0]) <= 4 * U32 * (32 + 4 * logit), $"{path} f32 {o32[0]}");
        }
        Assert.InRange(reference[0], 1.26, 1.27); // (1·e + 2·1)/(e + 1)
    }

    [Fact]
    public void Float32_logits_beyond_the_type_range_fall_back_to_float64()
    {
        // s·q·k = 1e40 overflows float32; the row must still be the one-hot answer, on every path and in partial mode.
        float[] q = [1e20f], k = [1e20f, -1e20f], v = [5, 7];
        var p = new AttentionProblem<float>(q, k, v, 1, 2, 1, 1, scale: 1);
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
        {
            var alg = new FlashAttention { Tuning = new FlashTuning(Path: path) };
            Assert.Equal(5f, alg.Compute(p).Output[0]);
            var partial = alg.ComputePartial(p);
            var o = new float[1];
            partial.Normalize(o);
            Assert.Equal(5f, o[0]);
        }
    }

    [Fact]
    public void Logits_that_overflow_to_minus_infinity_are_not_a_row_that_sees_no_key()
    {
        // Every logit of the row is a finite real far below −3.4e38 (float32) or −1.8e308 (float64): the kernel's exp gives 0
        // for all keys, as for a fully masked row, but the answer is the value of the largest logit's key.
        float[] q = [1e20f], k = [-3e20f, -1e20f, -2e20f], v = [5, 7, 9];
        double[] qd = [1e200], kd = [-3e200, -1e200, -2e200], vd = [5, 7, 9];
        var p32 = new AttentionProblem<float>(q, k, v, 1, 3, 1, 1, scale: 1);
        var p64 = new AttentionProblem<double>(qd, kd, vd, 1, 3, 1, 1, scale: 1);
        var p16 = new AttentionProblem<Half>(new[] { (Half)100 }, new[] { (Half)(-300), (Half)(-100), (Half)(-200) }, new[] { (Half)5, (Half)7, (Half)9 }, 1, 3, 1, 1, scale: 1e37);
        // s beyond float32 itself with a small logit's real value: s·log₂e overflows the float32 kernel's query scale.
        var pScale = new AttentionProblem<float>(new[] { 1e-30f }, new[] { -3f, -1f, -2f }, new[] { 5f, 7f, 9f }, 1, 3, 1, 1, scale: 1e300);
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
        {
            var alg = new FlashAttention { Tuning = new FlashTuning(Path: path) };
            Assert.Equal(7f, alg.Compute(p32).Output[0]);
            Assert.Equal(7.0, alg.Compute(p64).Output[0]);
            Assert.Equal((Half)7, alg.Compute(p16).Output[0]);
            Assert.Equal(7f, alg.Compute(pScale).Output[0]);
            var o = new float[1];
            alg.ComputePartial(p32).Normalize(o);
            Assert.Equal(7f, o[0]);
        }
        // A row that really sees no key keeps its zeros (a causal bottom-right row with n > m).
        var none = new AttentionProblem<float>(new[] { 1f, 1f, 1f }, new[] { 1f }, new[] { 5f }, 3, 1, 1, 1, scale: 1e30, causal: true)
            .WithMask(new AttentionMask { CausalAlignment = CausalAlignment.BottomRight });
        var outNone = new FlashAttention().Compute(none).Output;
        Assert.Equal(0f, outNone[0]); Assert.Equal(0f, outNone[1]); Assert.Equal(5f, outNone[2]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Log_sum_exp_matches_the_reference_per_row(bool causal)
    {
        foreach (var (n, m, d) in new[] { (45, 131, 7), (3, 131, 7), (45, 131, 3) })
        {
            var p = TestData.Problem(n, m, d, 5, 3, seed: 21, causal: causal, heads: 2);
            var (output, lse) = new FlashAttention { Tuning = new FlashTuning(KeySplits: n < 16 ? 3 : 0) }.ComputeWithLogSumExp(p, threads: 2);
            Assert.True(TestData.MaxAbsDiff(output, ReferenceAttention.Compute(p)) <= 1e-12 * p.VMax);
            var row = new double[p.Dv];
            for (int h = 0; h < 2; h++)
            {
                var (qd, kd, vd) = p.Head(h).ToDouble();
                for (int i = 0; i < p.N; i++)
                {
                    double expected = ReferenceAttention.Row(qd, kd, vd, p.M, p.D, p.Dv, p.Scale, causal, i, row);
                    Assert.True(Math.Abs(lse[h * p.N + i] - expected) <= 1e-12 * (1 + Math.Abs(expected)), $"n={n} d={d} head {h} row {i}: {lse[h * p.N + i]} vs {expected}");
                }
            }
        }
    }

    [Fact]
    public void Multi_head_and_batched_inputs_run_head_by_head()
    {
        var p = TestData.Problem(37, 29, 8, 6, 1, seed: 3, heads: 6);
        var reference = ReferenceAttention.Compute(p);
        var o = new FlashAttention().Compute(p, new AttentionSettings { Threads = 2 }).Output;
        Assert.True(TestData.MaxAbsDiff(o, reference) <= 1e-12);
    }

    [Fact]
    public void Ties_duplicate_keys_and_zero_queries_match_the_reference()
    {
        int n = 9, m = 70, d = 4;
        var q = TestData.Uniform(n * d, 3, 1);
        Array.Clear(q, 0, d); // query 0 is zero: uniform attention
        var k = new double[m * d];
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) k[j * d + c] = j % 3 == 0 ? 2.0 : -1.0 + c; // duplicates, ties
        var v = TestData.Uniform(m * 3, 1, 2);
        var p = new AttentionProblem<double>(q, k, v, n, m, d, 3, scale: 1);
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
            Assert.True(TestData.MaxAbsDiff(new FlashAttention { Tuning = new FlashTuning(Path: path) }.Compute(p).Output, ReferenceAttention.Compute(p)) <= 1e-12, $"{path}");
    }

    [Fact]
    public void Huge_values_and_large_entries_match_the_reference()
    {
        var p = TestData.Problem(50, 90, 4, 4, 6.0, seed: 12);
        var v = TestData.Uniform(90 * 4, 1e30, 13);
        var big = new AttentionProblem<double>(p.Q, p.K, v, 50, 90, 4, 4, scale: 1);
        foreach (var path in new[] { FlashPath.General, FlashPath.SmallD, FlashPath.Decode })
        {
            if (path == FlashPath.Decode) continue; // n = 50 > 16
            double e = TestData.MaxAbsDiff(new FlashAttention { Tuning = new FlashTuning(Path: path) }.Compute(big).Output, ReferenceAttention.Compute(big));
            Assert.True(e <= 1e-12 * 1e30, $"{path}: {e:E3}");
        }
    }

    [Fact]
    public void Property_random_shapes_and_values_match_the_reference()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 40], Gen.Int[1, 20], Gen.Int[1, 20], Gen.Double[0.01, 4], Gen.Bool, Gen.Int)
            .Sample((n, m, d, dv, bound, causal, seed) =>
            {
                var p = TestData.Problem(n, m, d, dv, bound, seed, scale: 1.0 / d, causal: causal);
                double e = TestData.MaxAbsDiff(new FlashAttention().Compute(p, new AttentionSettings { Threads = 1 + Math.Abs(seed % 3) }).Output, ReferenceAttention.Compute(p));
                return e <= 1e-12 * Math.Max(p.VMax, 1e-300);
            }, iter: 300);
    }
}
