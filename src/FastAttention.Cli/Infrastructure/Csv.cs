using System.Globalization;
using System.Text;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// A CSV table with fixed columns, written atomically: invariant culture, doubles round-trip ("R"), NaN and null as
/// empty fields, booleans as true/false, strings quoted when they hold a comma, quote or line break (RFC 4180).
/// </summary>
internal sealed class CsvTable
{
    private readonly List<string> _lines = [];

    public CsvTable(params string[] columns)
    {
        if (columns.Length == 0) throw new ArgumentException("a table needs at least one column.", nameof(columns));
        Columns = columns;
    }

    public IReadOnlyList<string> Columns { get; }
    public int Rows => _lines.Count;

    /// <summary>Adds one row; there must be one value per column.</summary>
    public void Add(params object?[] values)
    {
        if (values.Length != Columns.Count)
            throw new ArgumentException($"a row needs {Columns.Count} values ({string.Join(",", Columns)}), got {values.Length}.", nameof(values));
        _lines.Add(string.Join(",", values.Select(Format)));
    }

    public string ToText()
    {
        var sb = new StringBuilder();
        sb.Append(string.Join(",", Columns)).Append('\n');
        foreach (var l in _lines) sb.Append(l).Append('\n');
        return sb.ToString();
    }

    /// <summary>Writes the table to <paramref name="path"/> (temporary file, then rename).</summary>
    public void Write(string path)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(ToText());
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    public static string Format(object? v) => v switch
    {
        null => "",
        double d when double.IsNaN(d) => "",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => Format((double)f),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => Quote(v.ToString() ?? ""),
    };

    private static string Quote(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
