using System.Collections.Immutable;
using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace Portcullis.Tests.Architecture;

/// <summary>
/// The folder → folder dependency graph of the compiled gateway, read from its metadata: for each type
/// (nested and compiler-generated types count for the top-level type that declares them) every type of
/// the assembly it names in its base type, interfaces, generic constraints, attributes, field, property,
/// method and local signatures, and every type, method or field its method bodies' IL refers to. A node
/// is the top-level folder of <c>src/Portcullis</c> the type's namespace names (namespace = folder is
/// enforced by <see cref="DependencyDirectionTests"/>); types of other assemblies are not nodes.
/// </summary>
internal sealed class FolderDependencyGraph
{
    private static readonly Dictionary<short, OperandType> Operands = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value, o => o.OperandType);

    private readonly MetadataReader _reader;
    private readonly PEReader _pe;
    private readonly Dictionary<TypeDefinitionHandle, string> _nodeOf = [];

    /// <summary>(from, to) → the type names that make the edge, e.g. "Portcullis.State.CounterStore → Portcullis.Traffic.CompiledQuota".</summary>
    public SortedDictionary<(string From, string To), SortedSet<string>> Edges { get; } = [];

    public FolderDependencyGraph(string assemblyPath)
    {
        using var pe = new PEReader(File.OpenRead(assemblyPath));
        _pe = pe;
        _reader = pe.GetMetadataReader();
        foreach (var handle in _reader.TypeDefinitions) _nodeOf[handle] = NodeOf(handle);
        foreach (var handle in _reader.TypeDefinitions)
        {
            var from = _nodeOf[handle];
            if (from.Length == 0) continue;
            var source = Name(Outermost(handle));
            foreach (var target in References(handle).Where(t => !t.IsNil).Distinct())
            {
                var to = _nodeOf[target];
                if (to.Length == 0 || to == from) continue;
                var key = (from, to);
                if (!Edges.TryGetValue(key, out var evidence)) Edges[key] = evidence = new(StringComparer.Ordinal);
                evidence.Add($"{source} → {Name(Outermost(target))}");
            }
        }
    }

    /// <summary>"Portcullis.Identity.Sessions" → "Identity"; the DI extensions → "Hosting"; anything else (generated, external) → "".</summary>
    public static string NodeOfNamespace(string ns) => ns switch
    {
        "Microsoft.Extensions.DependencyInjection" => "Hosting",
        "Portcullis" => "(root)",
        _ when ns.StartsWith("Portcullis.", StringComparison.Ordinal) => ns.Split('.')[1],
        _ => "",
    };

    private string NodeOf(TypeDefinitionHandle handle) =>
        NodeOfNamespace(_reader.GetString(_reader.GetTypeDefinition(Outermost(handle)).Namespace));

    private TypeDefinitionHandle Outermost(TypeDefinitionHandle handle)
    {
        while (_reader.GetTypeDefinition(handle).GetDeclaringType() is { IsNil: false } outer) handle = outer;
        return handle;
    }

    private string Name(TypeDefinitionHandle handle)
    {
        var type = _reader.GetTypeDefinition(handle);
        return $"{_reader.GetString(type.Namespace)}.{_reader.GetString(type.Name)}";
    }

    private List<TypeDefinitionHandle> References(TypeDefinitionHandle handle)
    {
        var provider = new TypeCollector(this);
        var type = _reader.GetTypeDefinition(handle);
        var found = new List<TypeDefinitionHandle>();
        found.AddRange(FromEntity(type.BaseType, provider));
        foreach (var i in type.GetInterfaceImplementations()) found.AddRange(FromEntity(_reader.GetInterfaceImplementation(i).Interface, provider));
        foreach (var p in type.GetGenericParameters()) found.AddRange(Constraints(p, provider));
        found.AddRange(Attributes(type.GetCustomAttributes(), provider));
        foreach (var f in type.GetFields())
        {
            var field = _reader.GetFieldDefinition(f);
            found.AddRange(field.DecodeSignature(provider, null));
            found.AddRange(Attributes(field.GetCustomAttributes(), provider));
        }

        foreach (var p in type.GetProperties())
        {
            var property = _reader.GetPropertyDefinition(p);
            found.AddRange(property.DecodeSignature(provider, null).ReturnType);
            found.AddRange(Attributes(property.GetCustomAttributes(), provider));
        }

        foreach (var m in type.GetMethods()) found.AddRange(Method(m, provider));
        return found;
    }

    private List<TypeDefinitionHandle> Method(MethodDefinitionHandle handle, TypeCollector provider)
    {
        var method = _reader.GetMethodDefinition(handle);
        var found = new List<TypeDefinitionHandle>();
        var signature = method.DecodeSignature(provider, null);
        found.AddRange(signature.ReturnType);
        foreach (var parameter in signature.ParameterTypes) found.AddRange(parameter);
        found.AddRange(Attributes(method.GetCustomAttributes(), provider));
        foreach (var p in method.GetGenericParameters()) found.AddRange(Constraints(p, provider));
        foreach (var p in method.GetParameters()) found.AddRange(Attributes(_reader.GetParameter(p).GetCustomAttributes(), provider));
        if (method.RelativeVirtualAddress == 0) return found;

        var body = _pe.GetMethodBody(method.RelativeVirtualAddress);
        if (!body.LocalSignature.IsNil)
        {
            foreach (var local in _reader.GetStandaloneSignature(body.LocalSignature).DecodeLocalSignature(provider, null)) found.AddRange(local);
        }

        var il = body.GetILReader();
        while (il.RemainingBytes > 0)
        {
            short code = il.ReadByte();
            if (code == 0xFE) code = unchecked((short)(0xFE00 | il.ReadByte()));
            switch (Operands[code])
            {
                case OperandType.InlineNone: break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar: il.ReadByte(); break;
                case OperandType.InlineVar: il.ReadInt16(); break;
                case OperandType.InlineI8 or OperandType.InlineR: il.ReadInt64(); break;
                case OperandType.InlineSwitch:
                    var targets = il.ReadInt32(); // read before Offset: `Offset += 4 * ReadInt32()` reads Offset first
                    il.Offset += 4 * targets;
                    break;
                case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok:
                    found.AddRange(FromToken(MetadataTokens.EntityHandle(il.ReadInt32()), provider));
                    break;
                default: il.ReadInt32(); break; // InlineBrTarget, InlineI, InlineSig, InlineString, ShortInlineR
            }
        }

        return found;
    }

    private IEnumerable<TypeDefinitionHandle> FromToken(EntityHandle token, TypeCollector provider)
    {
        switch (token.Kind)
        {
            case HandleKind.MethodDefinition:
                return [_reader.GetMethodDefinition((MethodDefinitionHandle)token).GetDeclaringType()];
            case HandleKind.FieldDefinition:
                return [_reader.GetFieldDefinition((FieldDefinitionHandle)token).GetDeclaringType()];
            case HandleKind.MemberReference:
                var member = _reader.GetMemberReference((MemberReferenceHandle)token);
                return member.Parent.Kind == HandleKind.MethodDefinition ? FromToken(member.Parent, provider) : FromEntity(member.Parent, provider);
            case HandleKind.MethodSpecification:
                var spec = _reader.GetMethodSpecification((MethodSpecificationHandle)token);
                return FromToken(spec.Method, provider).Concat(spec.DecodeSignature(provider, null).SelectMany(t => t));
            default:
                return FromEntity(token, provider);
        }
    }

    private ImmutableArray<TypeDefinitionHandle> FromEntity(EntityHandle handle, TypeCollector provider) => handle.Kind switch
    {
        HandleKind.TypeDefinition => [(TypeDefinitionHandle)handle],
        HandleKind.TypeSpecification => _reader.GetTypeSpecification((TypeSpecificationHandle)handle).DecodeSignature(provider, null),
        _ => [],
    };

    private IEnumerable<TypeDefinitionHandle> Constraints(GenericParameterHandle handle, TypeCollector provider) =>
        _reader.GetGenericParameter(handle).GetConstraints().SelectMany(c => FromEntity(_reader.GetGenericParameterConstraint(c).Type, provider));

    private IEnumerable<TypeDefinitionHandle> Attributes(CustomAttributeHandleCollection attributes, TypeCollector provider) =>
        attributes.SelectMany(a => FromToken(_reader.GetCustomAttribute(a).Constructor, provider));

    /// <summary>Decodes a signature into the assembly's own types it names (generic arguments, arrays and pointers included).</summary>
    private sealed class TypeCollector(FolderDependencyGraph graph) : ISignatureTypeProvider<ImmutableArray<TypeDefinitionHandle>, object?>
    {
        public ImmutableArray<TypeDefinitionHandle> GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => [handle];

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => [];

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromSpecification(MetadataReader reader, object? context, TypeSpecificationHandle handle, byte rawTypeKind) =>
            graph.FromEntity(handle, this);

        public ImmutableArray<TypeDefinitionHandle> GetGenericInstantiation(ImmutableArray<TypeDefinitionHandle> genericType, ImmutableArray<ImmutableArray<TypeDefinitionHandle>> typeArguments) =>
            [.. genericType, .. typeArguments.SelectMany(a => a)];

        public ImmutableArray<TypeDefinitionHandle> GetFunctionPointerType(MethodSignature<ImmutableArray<TypeDefinitionHandle>> signature) =>
            [.. signature.ReturnType, .. signature.ParameterTypes.SelectMany(p => p)];

        public ImmutableArray<TypeDefinitionHandle> GetArrayType(ImmutableArray<TypeDefinitionHandle> elementType, ArrayShape shape) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetSZArrayType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetByReferenceType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetPointerType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetPinnedType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetModifiedType(ImmutableArray<TypeDefinitionHandle> modifier, ImmutableArray<TypeDefinitionHandle> unmodifiedType, bool isRequired) => unmodifiedType;

        public ImmutableArray<TypeDefinitionHandle> GetGenericMethodParameter(object? context, int index) => [];

        public ImmutableArray<TypeDefinitionHandle> GetGenericTypeParameter(object? context, int index) => [];

        public ImmutableArray<TypeDefinitionHandle> GetPrimitiveType(PrimitiveTypeCode typeCode) => [];
    }
}
