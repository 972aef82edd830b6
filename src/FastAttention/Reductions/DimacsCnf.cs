using System.Globalization;

namespace FastAttention.Reductions;

/// <summary>A CNF formula: variables 1..<see cref="Variables"/>, clauses of non-zero literals (−v is ¬x_v).</summary>
public sealed class CnfFormula
{
    /// <summary>A formula over variables 1..<paramref name="variables"/>; the clauses are kept, not copied.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="variables"/> is negative.</exception>
    /// <exception cref="ArgumentException">A literal is 0 or names a variable above <paramref name="variables"/>.</exception>
    public CnfFormula(int variables, IReadOnlyList<int[]> clauses)
    {
        ArgumentNullException.ThrowIfNull(clauses);
        if (variables < 0) throw new ArgumentOutOfRangeException(nameof(variables), $"the variable count must be non-negative (got {variables}).");
        for (int c = 0; c < clauses.Count; c++)
            foreach (int lit in clauses[c])
                if (lit == 0 || Math.Abs((long)lit) > variables)
                    throw new ArgumentException($"clause {c + 1} has the literal {lit} outside ±1..{variables}.", nameof(clauses));
        Variables = variables; Clauses = clauses;
    }

    /// <summary>Number of variables v (literals are ±1..v).</summary>
    public int Variables { get; }
    /// <summary>The clauses; each is a disjunction of literals, the formula their conjunction.</summary>
    public IReadOnlyList<int[]> Clauses { get; }

    /// <summary>Whether the assignment (index v−1 holds x_v) satisfies every clause.</summary>
    public bool IsSatisfiedBy(IReadOnlyList<bool> assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        if (assignment.Count != Variables) throw new ArgumentException($"the assignment has {assignment.Count} values for {Variables} variables.", nameof(assignment));
        foreach (var clause in Clauses)
        {
            bool sat = false;
            foreach (int lit in clause) if (assignment[Math.Abs(lit) - 1] == lit > 0) { sat = true; break; }
            if (!sat) return false;
        }
        return true;
    }

    /// <summary>Brute-force satisfiability over all 2^v assignments (v ≤ 30): the satisfying assignment or null.</summary>
    public bool[]? BruteForce()
    {
        if (Variables > 30) throw new InvalidOperationException($"brute force over 2^{Variables} assignments is not offered (v ≤ 30).");
        var pos = new long[Clauses.Count]; var neg = new long[Clauses.Count];
        for (int c = 0; c < Clauses.Count; c++)
            foreach (int lit in Clauses[c])
                if (lit > 0) pos[c] |= 1L << (lit - 1); else neg[c] |= 1L << (-lit - 1);
        for (long x = 0; x < 1L << Variables; x++)
        {
            bool ok = true;
            for (int c = 0; c < pos.Length && ok; c++) ok = (x & pos[c]) != 0 || (~x & neg[c]) != 0;
            if (ok)
            {
                var r = new bool[Variables];
                for (int v = 0; v < Variables; v++) r[v] = (x >> v & 1) == 1;
                return r;
            }
        }
        return null;
    }
}

/// <summary>Thrown for malformed DIMACS input; the message names the line.</summary>
public sealed class DimacsFormatException(string source, int line, string problem)
    : ArgumentException($"{source}:{line}: {problem}", "cnf")
{
    /// <summary>The 1-based line of the input where the problem was found.</summary>
    public int Line { get; } = line;
}

/// <summary>
/// The DIMACS CNF format: 'c' comment lines, one header "p cnf &lt;variables&gt; &lt;clauses&gt;", then clauses as
/// literals terminated by 0 (a clause may span lines); an optional '%' line ends the data (SATLIB style).
/// Malformed input is rejected with its line number.
/// </summary>
public static class DimacsCnf
{
    /// <summary>Reads a DIMACS CNF file; messages name the file by its file name.</summary>
    /// <exception cref="DimacsFormatException">The input is malformed (the message names the line).</exception>
    public static CnfFormula Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Parse(File.ReadAllText(path), Path.GetFileName(path));
    }

    /// <summary>Parses DIMACS CNF text; <paramref name="source"/> names it in messages.</summary>
    /// <exception cref="DimacsFormatException">The input is malformed (the message names the line).</exception>
    public static CnfFormula Parse(string text, string source = "cnf")
    {
        ArgumentNullException.ThrowIfNull(text);
        int variables = -1, declared = -1, lineNo = 0, clauseStart = 0;
        var clauses = new List<int[]>();
        var current = new List<int>();
        foreach (string raw in text.Split('\n'))
        {
            lineNo++;
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == 'c') continue;
            if (line[0] == '%') break;
            if (line[0] == 'p')
            {
                if (variables >= 0) throw new DimacsFormatException(source, lineNo, "a second 'p cnf' header.");
                var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length != 4 || parts[0] != "p" || parts[1] != "cnf"
                    || !int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out variables)
                    || !int.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out declared))
                    throw new DimacsFormatException(source, lineNo, $"the header must read 'p cnf <variables> <clauses>' (got '{line}').");
                continue;
            }
            if (variables < 0) throw new DimacsFormatException(source, lineNo, "clause data before the 'p cnf' header.");
            foreach (string tok in line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
            {
                if (!int.TryParse(tok, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int lit))
                    throw new DimacsFormatException(source, lineNo, $"'{tok}' is not an integer literal.");
                if (lit == 0)
                {
                    clauses.Add([.. current]);
                    current.Clear();
                    continue;
                }
                if (Math.Abs((long)lit) > variables)
                    throw new DimacsFormatException(source, lineNo, $"the literal {lit} names a variable outside 1..{variables}.");
                if (current.Count == 0) clauseStart = lineNo;
                current.Add(lit);
            }
        }
        if (variables < 0) throw new DimacsFormatException(source, Math.Max(lineNo, 1), "no 'p cnf' header.");
        if (current.Count > 0) throw new DimacsFormatException(source, clauseStart, "the last clause is not terminated by 0.");
        if (clauses.Count != declared)
            throw new DimacsFormatException(source, lineNo, $"the header declares {declared} clauses but {clauses.Count} were given.");
        return new CnfFormula(variables, clauses);
    }
}
