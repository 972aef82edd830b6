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
        OutputFiles.WriteOne(path, s => s.Write(bytes));
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

/// <summary>Reads a CSV written by <see cref="CsvTable"/> (RFC 4180 quoting): the header and the rows as strings.</summary>
internal static class CsvReader
{
    public static (string[] Header, List<string[]> Rows) Read(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"the file '{path}' does not exist.");
        var lines = Split(File.ReadAllText(path));
        if (lines.Count == 0) throw new UsageException($"{path} is empty.");
        var header = lines[0];
        for (int i = 1; i < lines.Count; i++)
            if (lines[i].Length != header.Length)
                throw new UsageException($"{path}: row {i} has {lines[i].Length} fields, the header has {header.Length}.");
        return (header, lines.Skip(1).ToList());
    }

    private static List<string[]> Split(string text)
    {
        var rows = new List<string[]>();
        var fields = new List<string>();
        var f = new StringBuilder();
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { f.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else f.Append(c);
                continue;
            }
            switch (c)
            {
                case '"': quoted = true; any = true; break;
                case ',': fields.Add(f.ToString()); f.Clear(); any = true; break;
                case '\r': break;
                case '\n':
                    fields.Add(f.ToString()); f.Clear();
                    rows.Add([.. fields]); fields.Clear(); any = false;
                    break;
                default: f.Append(c); any = true; break;
            }
        }
        if (any || f.Length > 0) { fields.Add(f.ToString()); rows.Add([.. fields]); }
        return rows;
    }
}
