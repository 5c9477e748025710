"""Models the tests defer changes to: unique fields, a foreign key and a many-to-many relation."""

from django.conf import settings
from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=50)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    email = models.EmailField(unique=True)
    nickname = models.CharField(max_length=50, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, blank=True)
    # Confirmed by SMS (E.164), by letter (a postal address) and by micro-deposits (a bank account).
    phone = models.CharField(max_length=20, blank=True)
    address_name = models.CharField(max_length=100, blank=True)
    address_line1 = models.CharField(max_length=100, blank=True)
    address_line2 = models.CharField(max_length=100, blank=True)
    address_city = models.CharField(max_length=100, blank=True)
    address_postal_code = models.CharField(max_length=20, blank=True)
    address_country = models.CharField(max_length=2, blank=True)
    bank_holder = models.CharField(max_length=100, blank=True)
    bank_iban = models.CharField(max_length=34, blank=True)
    bank_routing_number = models.CharField(max_length=9, blank=True)
    bank_account_number = models.CharField(max_length=17, blank=True)
