using System.Text;
using System.Text.Json;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Writes flat or nested JSON objects from ordered key/value lists (numbers, strings, bools, lists, objects).</summary>
internal static class Json
{
    public static string Object(IEnumerable<KeyValuePair<string, object?>> fields)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
            WriteValue(w, fields);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    public static void WriteValue(Utf8JsonWriter w, object? v)
    {
        switch (v)
        {
            case null: w.WriteNullValue(); break;
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case double d when double.IsFinite(d): w.WriteNumberValue(d); break;
            case double d: w.WriteStringValue(d.ToString(System.Globalization.CultureInfo.InvariantCulture)); break;
            case float f: WriteValue(w, (double)f); break;
            case IEnumerable<KeyValuePair<string, object?>> obj:
                w.WriteStartObject();
                foreach (var kv in obj) { w.WritePropertyName(kv.Key); WriteValue(w, kv.Value); }
                w.WriteEndObject();
                break;
            case System.Collections.IEnumerable list:
                w.WriteStartArray();
                foreach (var x in list) WriteValue(w, x);
                w.WriteEndArray();
                break;
            default: w.WriteStringValue(Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture)); break;
        }
    }
}
