namespace Portcullis.Configuration;

/// <summary>
/// A file or folder path, relative to the file it is written in: when the config is composed of several files
/// (include, overlays), a relative path from another file's folder is made absolute as it is bound.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class FilePathAttribute : Attribute;

/// <summary>Lets a list item be written as a plain string that sets the named property.</summary>
[AttributeUsage(AttributeTargets.Class)]
internal sealed class ScalarShorthandAttribute(string propertyName) : Attribute
{
    public string PropertyName { get; } = propertyName;
}
