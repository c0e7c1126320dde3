"""Record: small declarative classes stored in a KeyVal store, looked up by primary key only."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, TypeVar, overload

from keyedcache.contrib.keyval.store import KeyVal, check_store_name

R = TypeVar("R", bound="Record")


class Field:
    """One attribute of a Record: `Field(default=...)`, or `Field(pk=True)` for its key.

    A callable default is called for each new record; other defaults are copied,
    so a list or dict default is never shared between records.
    """

    def __init__(self, default: Any = None, *, pk: bool = False) -> None:
        self.default = default
        self.pk = pk
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Field {self.name!r}{' pk' if self.pk else ''}>"

    def initial(self) -> Any:
        """The value a new record starts with."""
        default = self.default
        return default() if callable(default) else copy.deepcopy(default)

    @overload
    def __get__(self, instance: None, owner: type) -> Field: ...
    @overload
    def __get__(self, instance: object, owner: type) -> Any: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        if instance is None:
            return self
        return instance.__dict__[self.name]

    def __set__(self, instance: object, value: Any) -> None:
        instance.__dict__[self.name] = value


class Record:
    """Structured values in a KeyVal store, one per primary key.

    ```
    class Profile(Record):
        user_id = Field(pk=True)
        theme = Field(default="light")

    Profile(user_id=7, theme="dark").save()
    Profile.get(7).theme            # 'dark'; Profile.get(8) is None
    ```

    The store is named `<module>.<qualname>` of the class, or what the class
    keyword `store=` says (`class Profile(Record, store="profiles")`). A record
    is stored under `str(pk)` as a dict of its fields, so fields can be added
    (old records get the default) or removed (their values are ignored).
    There is no querying beyond the primary key, by design: keep an index in
    another record, or use a Django model.
    """

    #: Name of the KeyVal store holding this class's records.
    store_name: ClassVar[str]
    #: The fields, in definition order (base classes first).
    fields: ClassVar[dict[str, Field]]
    #: Name of the primary-key field.
    pk_name: ClassVar[str]

    def __init_subclass__(cls, *, store: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Field] = {}
        for klass in reversed(cls.__mro__):
            fields.update((n, v) for n, v in vars(klass).items() if isinstance(v, Field))
        keys = [name for name, field in fields.items() if field.pk]
        if len(keys) != 1:
            raise TypeError(
                f"Record {cls.__qualname__} needs exactly one Field(pk=True); it has "
                f"{len(keys)}{': ' + ', '.join(keys) if keys else ''}."
            )
        cls.fields = fields
        cls.pk_name = keys[0]
        cls.store_name = check_store_name(store or f"{cls.__module__}.{cls.__qualname__}")

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self.fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(unknown)}")
        for name, field in self.fields.items():
            setattr(self, name, values[name] if name in values else field.initial())

    @classmethod
    def keyval(cls) -> KeyVal:
        """The KeyVal store of this class's records."""
        return KeyVal(cls.store_name)

    @property
    def pk(self) -> Any:
        """The value of the primary-key field."""
        return getattr(self, self.pk_name)

    @staticmethod
    def _key(pk: Any) -> str:
        if pk is None:
            raise ValueError("a Record needs a primary key (it is None)")
        return str(pk)

    def to_dict(self) -> dict[str, Any]:
        """The record's fields as a dict: what is stored."""
        return {name: getattr(self, name) for name in self.fields}

    @classmethod
    def get(cls: type[R], pk: Any) -> R | None:
        """The record stored under `pk`, or None."""
        data = cls.keyval().get_default(cls._key(pk))
        if not isinstance(data, dict):
            return None
        return cls(**{name: data[name] for name in cls.fields if name in data})

    def save(self) -> bool:
        """Store the record under its primary key; True if it was new."""
        return self.keyval().set(self._key(self.pk), self.to_dict())

    def delete(self) -> bool:
        """Delete the stored record; say whether it was stored."""
        return self.keyval().delete(self._key(self.pk), ignore_keyerror=True)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.to_dict().items())
        return f"{type(self).__name__}({fields})"
