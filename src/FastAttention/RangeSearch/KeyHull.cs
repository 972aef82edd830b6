namespace FastAttention.RangeSearch;

/// <summary>
/// The convex hull of a tree's keys in two dimensions (in one, its two extreme keys: <see cref="Extremes"/>), for the row
/// maximum: max_j a·k_j is attained at a hull vertex, so a
/// query's maximum (Algorithm 1 step 3; Lemma A.4 needs it only to a grid step) is a scan of a few dozen vertices instead
/// of a branch and bound that descends to a leaf on every query (≈ 16 nodes per query at d = 2, n = 2¹⁸).
/// <para><b>Certificate.</b> The hull is built in plain float64 (candidates outside an octagon of extreme keys, then
/// Andrew's monotone chain, every kept turn left by a margin), so rounding may drop a key that lies barely outside it.
/// Nothing is trusted: a verification pass over the kd-tree bounds δ ≥ max over keys and edges of n̂ᵢ·(k − vᵢ) (exact
/// edge normals; boxes inside every edge by a margin are skipped, leaf keys measured with their rounding bound). For a
/// query direction a in the normal cone of vertex vⱼ, a = α·n̂ⱼ₋₁ + β·n̂ⱼ with α, β ≥ 0, so a·k ≤ a·vⱼ + (α + β)·δ and
/// α + β ≤ ‖a‖·√(2/(1 + cos θⱼ)) (θⱼ the exterior angle at vⱼ): max_j a·k_j ≤ max_j a·vⱼ + ‖a‖·<see cref="Reach"/>,
/// Reach = F·δ with F the largest such factor (+1 %). Hulls with fewer than 3 or more than <see cref="MaximumVertices"/>
/// vertices, or a vertex sharper than F = 12, are not made (the branch and bound answers).</para>
/// Immutable.
/// </summary>
internal sealed class KeyHull
{
    /// <summary>Hulls with more vertices are not made (keys on a circle: every key is a vertex).</summary>
    public const int MaximumVertices = 64;
    /// <summary>Trees with fewer keys use the branch and bound (a leaf or two is as cheap as a hull scan).</summary>
    public const int MinimumKeys = 256;
    private const double U = RangeErrorBudget.U;

    private KeyHull(double[] x, double[] y, int[] positions, double reach)
    {
        X = x; Y = y; Positions = positions; Reach = reach;
    }

    /// <summary>Vertex coordinates, counter-clockwise.</summary>
    public double[] X { get; }
    /// <inheritdoc cref="X"/>
    public double[] Y { get; }
    /// <summary>Tree positions of the vertices (real keys).</summary>
    public int[] Positions { get; }
    /// <summary>F·δ: max_j a·k_j ≤ max over vertices of a·v + ‖a‖₂·Reach.</summary>
    public double Reach { get; }

    /// <summary>The largest a·v over the vertices (plain float64 dot products, the same roundings as the keys' own) and
    /// that vertex's index.</summary>
    public double Max(ReadOnlySpan<double> a, out int vertex)
    {
        var x = X; var y = Y;
        if (y.Length == 0)
        {
            // d = 1: the two extreme keys, exactly (Reach 0).
            vertex = a[0] >= 0 ? 1 : 0;
            return a[0] * x[vertex];
        }
        double a0 = a[0], a1 = a[1], best = double.NegativeInfinity;
        vertex = 0;
        for (int j = 0; j < x.Length; j++)
        {
            double v = a0 * x[j] + a1 * y[j];
            if (v > best) { best = v; vertex = j; }
        }
        return best;
    }

    /// <summary>d = 1: the smallest and the largest key (in that order; Y empty, Reach 0): max_j a·k_j is a·k_max for
    /// a ≥ 0 and a·k_min otherwise, exactly.</summary>
    public static KeyHull Extremes(double[] keys, int m)
    {
        int lo = 0, hi = 0;
        for (int j = 1; j < m; j++)
        {
            if (keys[j] < keys[lo]) lo = j;
            if (keys[j] > keys[hi]) hi = j;
        }
        return new KeyHull([keys[lo], keys[hi]], [], [lo, hi], 0);
    }

    /// <summary>The hull of the m keys <paramref name="keys"/> (tree order, rows of 2), verified against the kd-tree given
    /// by <paramref name="links"/> (lo, hi, left, right per node) and <paramref name="box"/> (centre, half-widths per node);
    /// null when no hull applies (see the class remarks).</summary>
    public static KeyHull? TryBuild(double[] keys, int m, int[] links, double[] box)
    {
        if (m < MinimumKeys) return null;
        // 1. The octagon of extreme keys (min/max of x, y, x + y, x − y), counter-clockwise.
        Span<int> ext = stackalloc int[8];
        Span<double> best = stackalloc double[8];
        best.Fill(double.NegativeInfinity);
        double scale = 0;
        for (int j = 0; j < m; j++)
        {
            double x = keys[2 * j], y = keys[2 * j + 1];
            scale = Math.Max(scale, Math.Max(Math.Abs(x), Math.Abs(y)));
            // Directions at 0°, 45°, …, 315°: x, x + y, y, y − x, −x, −x − y, −y, x − y (counter-clockwise order).
            Consider(best, ext, 0, x, j); Consider(best, ext, 1, x + y, j); Consider(best, ext, 2, y, j); Consider(best, ext, 3, y - x, j);
            Consider(best, ext, 4, -x, j); Consider(best, ext, 5, -x - y, j); Consider(best, ext, 6, -y, j); Consider(best, ext, 7, x - y, j);
        }
        // Squares of the coordinates must stay normal numbers (the rounding bounds below are relative): beyond that range
        // the branch and bound answers.
        if (!(scale > 1e-100 && scale < 1e100)) return null;
        // Orientation rounding is ≤ 8u·(|Δx₁Δy₂| + |Δy₁Δx₂|) ≤ 32u·scale²; a margin well above it.
        double margin = 1e-12 * scale * scale;
        var oct = new List<int>(8);
        foreach (int e in ext) if (oct.Count == 0 || (oct[^1] != e && oct[0] != e)) oct.Add(e);
        // 2. Candidates: keys not inside the octagon by the margin (the octagon's vertices are hull vertices; a key inside
        //    it by more than rounding is not). Found through the kd-tree: a box inside every octagon edge by the margin is
        //    skipped whole, so only the leaves along the boundary are read. With fewer than 3 distinct extremes, every key.
        int oc = oct.Count;
        Span<double> lx = stackalloc double[8], ly = stackalloc double[8], lc = stackalloc double[8];
        for (int e = 0; e < oc; e++)
        {
            // Left of p → q: (q − p) × (k − p) = −ey·kx + ex·ky + (ey·px − ex·py) > 0.
            int p = oct[e], q = oct[(e + 1) % oc];
            double ex = keys[2 * q] - keys[2 * p], ey = keys[2 * q + 1] - keys[2 * p + 1];
            lx[e] = -ey; ly[e] = ex; lc[e] = ey * keys[2 * p] - ex * keys[2 * p + 1];
        }
        var cand = new List<int>();
        var todo = new Stack<int>();
        todo.Push(0);
        while (todo.Count > 0)
        {
            int node = todo.Pop();
            if (oc >= 3)
            {
                double cx = box[4 * node], cy = box[4 * node + 1], wx = box[4 * node + 2], wy = box[4 * node + 3];
                bool inside = true;
                for (int e = 0; e < oc && inside; e++)
                    if (lx[e] * cx + ly[e] * cy + lc[e] - Math.Abs(lx[e]) * wx - Math.Abs(ly[e]) * wy <= margin) inside = false;
                if (inside) continue;
            }
            if (links[4 * node + 2] >= 0) { todo.Push(links[4 * node + 3]); todo.Push(links[4 * node + 2]); continue; }
            for (int j = links[4 * node]; j < links[4 * node + 1]; j++) cand.Add(j);
        }
        if (cand.Count > 1 << 20) return null;
        // 3. Andrew's monotone chain over the candidates sorted by (x, y); a turn counts as left only beyond the margin.
        cand.Sort((i, j) => keys[2 * i] != keys[2 * j] ? keys[2 * i].CompareTo(keys[2 * j]) : keys[2 * i + 1].CompareTo(keys[2 * j + 1]));
        var hull = new List<int>(2 * MaximumVertices);
        for (int pass = 0; pass < 2; pass++)
        {
            int start = hull.Count;
            for (int t = 0; t < cand.Count; t++)
            {
                int j = pass == 0 ? cand[t] : cand[cand.Count - 1 - t];
                while (hull.Count >= start + 2 && Cross(keys, hull[^2], hull[^1], j) <= margin) hull.RemoveAt(hull.Count - 1);
                hull.Add(j);
            }
            hull.RemoveAt(hull.Count - 1); // the chain's last point starts the other chain
        }
        // The joints of the two chains: drop any vertex whose turn is not left by the margin, until none is left.
        for (bool changed = true; changed && hull.Count >= 3;)
        {
            changed = false;
            for (int t = 0; t < hull.Count && hull.Count >= 3; t++)
            {
                int p = hull[(t + hull.Count - 1) % hull.Count], q = hull[t], r = hull[(t + 1) % hull.Count];
                if (Cross(keys, p, q, r) <= margin) { hull.RemoveAt(t); changed = true; t--; }
            }
        }
        int h = hull.Count;
        if (h < 3 || h > MaximumVertices) return null;
        var hx = new double[h]; var hy = new double[h]; var pos = hull.ToArray();
        for (int t = 0; t < h; t++) { hx[t] = keys[2 * pos[t]]; hy[t] = keys[2 * pos[t] + 1]; }
        // 4. Unit outward normals of the edges (vₜ → vₜ₊₁; counter-clockwise, so the outside is to the right) and the
        //    factor F from the exterior angles (cos θ = n̂ₜ₋₁·n̂ₜ; rounded normals, hence the 1 % margin on F).
        var nx = new double[h]; var ny = new double[h];
        double worstLen = double.PositiveInfinity;
        for (int t = 0; t < h; t++)
        {
            double ex = hx[(t + 1) % h] - hx[t], ey = hy[(t + 1) % h] - hy[t], len = Math.Sqrt(ex * ex + ey * ey);
            if (!(len > 0)) return null;
            nx[t] = ey / len; ny[t] = -ex / len;
            worstLen = Math.Min(worstLen, len);
        }
        double f = 1;
        for (int t = 0; t < h; t++)
        {
            int p = (t + h - 1) % h;
            double cos = nx[p] * nx[t] + ny[p] * ny[t];
            if (!(cos > -0.98)) return null; // a needle vertex (θ > 168°): F would exceed ≈ 10
            f = Math.Max(f, Math.Sqrt(2 / (1 + cos)));
        }
        f *= 1.01;
        // 5. δ: the largest violation n̂ₜ·(k − vₜ) over keys and edges, each measured with its rounding. The rounded unit
        //    normal differs from the exact edge's by ≤ 4u (two differences, squares, root, division: relative, per
        //    component ≤ 4u·1), so the computed violation errs by ≤ (4u·2 + 4u)·(|k − vₜ|₁) ≤ 12u·4·scale.
        double err = 12 * U * 4 * scale + 4 * U * 4 * scale;
        double delta = 0;
        var stack = new Stack<int>();
        stack.Push(0);
        while (stack.Count > 0)
        {
            int node = stack.Pop();
            double cx = box[4 * node], cy = box[4 * node + 1], wx = box[4 * node + 2], wy = box[4 * node + 3];
            // The box's largest violation of each edge; all at most −2·err: no key inside can exceed δ = 0's bound.
            bool allInside = true;
            for (int t = 0; t < h && allInside; t++)
                if (nx[t] * (cx - hx[t]) + ny[t] * (cy - hy[t]) + Math.Abs(nx[t]) * wx + Math.Abs(ny[t]) * wy > -2 * err) allInside = false;
            if (allInside) continue;
            int lo = links[4 * node], hi = links[4 * node + 1], left = links[4 * node + 2];
            if (left >= 0) { stack.Push(links[4 * node + 3]); stack.Push(left); continue; }
            for (int j = lo; j < hi; j++)
            {
                double x = keys[2 * j], y = keys[2 * j + 1];
                for (int t = 0; t < h; t++)
                    delta = Math.Max(delta, nx[t] * (x - hx[t]) + ny[t] * (y - hy[t]) + err);
            }
        }
        return new KeyHull(hx, hy, pos, f * Math.Max(delta, 0) * (1 + 8 * U));
    }

    private static void Consider(Span<double> best, Span<int> ext, int i, double v, int j)
    {
        if (v > best[i]) { best[i] = v; ext[i] = j; }
    }

    /// <summary>(q − p) × (r − p) for keys p, q, r (positive: r is left of p → q).</summary>
    private static double Cross(double[] k, int p, int q, int r) =>
        (k[2 * q] - k[2 * p]) * (k[2 * r + 1] - k[2 * p + 1]) - (k[2 * q + 1] - k[2 * p + 1]) * (k[2 * r] - k[2 * p]);
}
