using FastAttention.Polynomial;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Polynomial;

public class KernelsTests
{
    [Theory]
    [InlineData(1, 1, 8, 1)]
    [InlineData(7, 2, 16, 13)]
    [InlineData(35, 5, 64, 64)]
    [InlineData(210, 5, 256, 250)]
    [InlineData(33, 9, 32, 31)]
    public void Key_sums_and_query_contraction_match_plain_loops(int r, int ncols, int stride, int len)
    {
        var f = TestData.Uniform(r * stride, 1, r + ncols);
        var cols = TestData.Uniform(ncols * stride, 1, 2 * r + len);
        var s = TestData.Uniform(ncols * r, 1, 3 * r);
        var expected = (double[])s.Clone();
        for (int c = 0; c < ncols; c++)
            for (int a = 0; a < r; a++)
            {
                double t = 0;
                for (int j = 0; j < len; j++) t += f[a * stride + j] * cols[c * stride + j];
                expected[c * r + a] += t;
            }
        Kernels.AccumulateKeySums(f, cols, r, ncols, stride, len, s);
        for (int i = 0; i < s.Length; i++) Assert.Equal(expected[i], s[i], 1e-12 * (len + 1));

        var acc = new double[ncols * stride];
        Kernels.ContractQueries(f, s, r, ncols, stride, len, acc);
        for (int c = 0; c < ncols; c++)
            for (int j = 0; j < len; j++)
            {
                double t = 0, mag = 0;
                for (int a = 0; a < r; a++) { t += f[a * stride + j] * s[c * r + a]; mag += Math.Abs(f[a * stride + j] * s[c * r + a]); }
                Assert.Equal(t, acc[c * stride + j], 1e-14 * (r + 1) * mag);
            }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(15, 3)]
    [InlineData(210, 5)]
    public void Causal_step_updates_then_contracts(int r, int ncols)
    {
        var phi = TestData.Uniform(r, 1, 1); var psi = TestData.Uniform(r, 1, 2); var v = TestData.Uniform(ncols, 1, 3);
        foreach (bool add in new[] { false, true })
        {
            var s = TestData.Uniform(ncols * r, 1, 4);
            var expected = (double[])s.Clone();
            if (add) for (int c = 0; c < ncols; c++) for (int a = 0; a < r; a++) expected[c * r + a] += psi[a] * v[c];
            var num = new double[ncols];
            Kernels.CausalStep(phi, psi, add, v, s, r, num);
            for (int c = 0; c < ncols; c++)
            {
                double t = 0;
                for (int a = 0; a < r; a++) { Assert.Equal(expected[c * r + a], s[c * r + a], 1e-15); t += phi[a] * expected[c * r + a]; }
                Assert.Equal(t, num[c], 1e-13 * r);
            }
        }
    }
}
